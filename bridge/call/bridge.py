"""One phone call: a Twilio Media Stream on one side, a Gemini Live session on the other.

This is the call's I/O loop, and only that: it moves frames and time, and the state it
acts on lives in the objects it drives (``TurnState``: what the caller asked;
``ModelTurns``: what the model says and what the caller heard; ``TwilioStream``: the
order of Twilio's events; the guards against idle, floods and audio faster than real
time; ``CallEnding``). Everything it needs comes in through ``CallResources``.

Two pumps carry the audio:

* caller → Gemini: every 20 ms μ-law frame is decoded, resampled to 16 kHz and
  sent as it arrives (no batching), so Gemini's VAD hears the caller at once;
* Gemini → caller: every model chunk is resampled to 8 kHz and sent as it
  arrives, its whole 20 ms μ-law frames in one media message (a partial frame
  waits for the next chunk), and each model turn ends with one ``mark`` so the
  bridge knows what is still queued in Twilio's buffer. On ``interrupted``
  the bridge sends ``clear`` at once and drops the rest of that turn.

Whichever pump ends first ends the call; the other is cancelled and awaited.
Tool calls and the actions that end a call once its last words have played
run as tasks the call owns and cancels.

A call outlives its stream. The stream owns the call's shared record while it runs
(``Tenure``) and, when it ends, says how: ended (the caller hung up, ``end_call``,
Gemini failed: Twilio's ``<Connect action>`` request then hangs up or apologises) or
released (its server is going away, Twilio's socket dropped: the request hands out a
new stream, on any server, which picks the conversation up where this one left it).

Why one module of ~500 lines: it is the one place where a call's events meet (setup,
the two pumps, tools, ending) and the order they happen in matters; split further, a
reader would follow one frame across files. What can stand alone already does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import replace
from enum import Enum

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from ..audio import TWILIO_FRAME_BYTES, CallerAudioStream
from ..gemini.client import client_content_message, text_input_message
from ..gemini.link import GeminiLink, GeminiLinkLost, LinkEvents, LinkState, SwapReason
from ..gemini.session import GeminiSetupError, SetupFailure
from ..gemini.wire import FunctionResponse, ServerContent
from ..observability.logs import tag_call
from ..state import StoreUnavailable
from ..tools import ToolRunner
from ..twilio.media_streams import (
    Dtmf,
    Mark,
    Media,
    ProtocolError,
    Start,
    Stop,
    TwilioEvent,
    clear_message,
    mark_message,
    media_message,
    parse_twilio_event,
)
from ..twilio.rest import TwilioCallError, TwilioCalls
from ..twilio.security import StreamGrant
from ..twilio.stream_state import StreamViolation, TwilioStream
from .audio_pace import AudioPace
from .ending import CallEnding
from .facts import CallFacts, RecordingStatus, is_machine
from .model_turns import ModelTurns
from .outcome import CallOutcome, CloseCode, Rejection, StreamRejected
from .plan import CallPlan
from .rate_limit import TokenBucket
from .registry import CallRecord, NoRoom
from .report import Closing, StreamSegment
from .resources import CallResources
from .shared_call import EndReason, ReleaseReason, SharedCall
from .stream_auth import VIOLATION_CLOSE
from .tenure import Tenure
from .transcript import Speaker, Transcript
from .turn_state import TurnState
from .wire_watch import WireWatch

log = logging.getLogger(__name__)


class CallEnd(Enum):
    CALLER_HUNG_UP = "caller hung up"  # Twilio's stop
    STREAM_LOST = "the stream closed without a stop"  # the call may go on elsewhere
    GEMINI_LOST = "Gemini could not be kept connected"
    MOVED_ON = "a later stream owns the call"


# A call hands over to another server at a quiet moment: nobody speaking, nothing
# playing, no question waiting for its answer, no tool running.
QUIET_RECHECK_S = 0.25
# An outbound call's verdict (a person or a machine): Twilio's detection gives one within
# its own 30 s timeout; after that the call goes on as with a person.
VERDICT_WAIT_S = 35.0
VERDICT_POLL_S = 0.1
MACHINE_MESSAGE_S = 30.0  # after a machine's verdict, its message replaces the stream


class CallBridge:
    def __init__(self, websocket: WebSocket, resources: CallResources) -> None:
        self._ws = websocket
        self._resources = resources
        self._metrics = resources.metrics
        self._caller_audio = CallerAudioStream()
        self._questions = TurnState(on_caller_finished=self._touch)
        self._model = ModelTurns(self._questions)
        self._stream = TwilioStream()
        guards = resources.guards
        self._guards = guards
        self._watch = WireWatch(guards.idle_timeout_s, guards.send_timeout_s)
        self._rate = TokenBucket(guards.flood_rate, guards.flood_burst)
        self._pace = AudioPace(guards.audio_ahead_s)
        self.transcript = Transcript()
        self._stream_sid = ""
        self._call_sid = ""
        self._tools = ToolRunner((), self._answer_tool, resources.tool_timeout_s)
        self._ending: CallEnding | None = None
        self._greeting_expected = False
        self._ready = asyncio.Event()  # Gemini is open and the pumps run
        self._record: CallRecord | None = None
        self._link: GeminiLink | None = None
        self._unknown_events_counted = 0
        self._tenure: Tenure | None = None
        self._handing_over = False
        self._activity = asyncio.Event()  # something that may make the call quiet happened
        self._recording: asyncio.Task[None] | None = None

    # --- the call's life ------------------------------------------------------------------

    async def run(self) -> None:
        registry = self._resources.registry
        try:
            start, grant = await self._authenticated_start()
        except StreamRejected as exc:
            registry.rejected(exc.rejection)
            log.warning("stream rejected: %s", exc.reason)
            await self._close(exc.code, exc.reason)
            return
        except WebSocketDisconnect:
            log.info("stream closed by Twilio before it started")
            return

        params = start.custom_parameters
        self._stream_sid, self._call_sid = start.stream_sid, start.call_sid
        caller, called = params.get("from", ""), params.get("to", "")
        tag_call(start.call_sid, start.stream_sid)  # every later line of this call carries it
        self._pace.restart()
        fleet = self._resources.fleet
        tenure = await Tenure.begin(
            fleet, start.call_sid, grant.stream, caller, called, self._conversation
        )
        if tenure is None:
            registry.rejected(Rejection.SUPERSEDED)
            log.warning("stream refused: the call has moved on to a later stream")
            await self._close(CloseCode.POLICY, "stream superseded")
            return
        self._tenure = tenure
        ledger = self._resources.ledger
        facts = await self._facts()
        try:
            with registry.admit(self, start.call_sid, start.stream_sid, caller, called) as record:
                self._record = record
                record.stream = grant.stream
                self._model.started_at = record.started_mono  # first audio counts from here
                plan = self._resources.planner.for_call(facts, called)
                self._start_recording(facts)
                if facts is not None and facts.awaiting_verdict and not tenure.picks_up:
                    record.outcome = await self._after_verdict(record, plan, tenure)
                else:
                    record.outcome = await self._bridge(record, plan, tenure)
                await ledger.stream_over(self._call_sid, self._segment(record), self._closing())
        except NoRoom:
            registry.rejected(Rejection.OVER_CAPACITY)
            log.warning("stream refused: no room on this instance")
            if fleet.shared:  # another server takes it
                await tenure.release(ReleaseReason.NO_ROOM)
            else:
                await tenure.end(EndReason.NO_ROOM)
                await ledger.close(self._call_sid, Closing.ended(EndReason.NO_ROOM))
            await self._close(CloseCode.TRY_AGAIN, "over capacity")
        finally:
            if self._recording is not None:  # bounded by the REST timeout
                await asyncio.gather(self._recording, return_exceptions=True)
            await tenure.close()

    async def _facts(self) -> CallFacts | None:
        """Who the call is with and as which persona (None: the store cannot say now, and
        the called number's persona answers)."""
        try:
            return await self._resources.ledger.facts(self._call_sid)
        except StoreUnavailable as exc:
            log.warning("call facts not read: %s", exc.reason)
            return None

    def _segment(self, record: CallRecord) -> StreamSegment:
        """What this stream saw, for the call's report."""
        return StreamSegment(
            stream=record.stream,
            server=self._resources.fleet.instance,
            started_at=record.started_at,
            ended_at=time.time(),
            outcome=record.outcome.value,
            failure=record.failure,
            gemini_setup_ms=record.gemini_setup_ms,
            first_audio_ms=record.first_audio_ms,
            turn_ms=list(record.turn_latencies_ms),
            reconnects=record.reconnects,
            interruptions=record.interruptions,
            tool_calls=list(self._tools.log),
            transcript=self.transcript.timed(),
        )

    def _closing(self) -> Closing | None:
        """The call ended with this stream (None: it goes on, on another)."""
        ended = self._tenure.ended if self._tenure is not None else None
        return Closing.ended(ended) if ended is not None else None

    # --- an outbound call: a person, or a machine? ----------------------------------------------

    async def _after_verdict(
        self, record: CallRecord, plan: CallPlan, tenure: Tenure
    ) -> CallOutcome:
        """Twilio's answering-machine detection runs beside the stream: Gemini is opened
        only once a person (or an unsure verdict) has answered, so a machine costs no
        session. A machine's message is left by whoever gets the verdict (``web``): its
        TwiML replaces the stream's, which stops."""
        reader = asyncio.create_task(self._until_stop(), name="until_verdict")
        try:
            verdict = await self._verdict(reader)
            if verdict is None:
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)
                return await self._bridge(record, plan, tenure)
            done, _ = await asyncio.wait({reader}, timeout=MACHINE_MESSAGE_S)
            error = reader.exception() if done else None
            ended = reader.result() if done and error is None else None
        finally:
            if not reader.done():
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)
        if isinstance(error, StreamRejected):
            record.failure = error.reason
            self._metrics.stream_rejections.labels(error.rejection.value).inc()
            log.warning("stream closed: %s", error.reason)
            await tenure.end(EndReason.FAILED)
            await self._close(error.code, error.reason)
            return CallOutcome.FAILED
        if error is not None:
            raise error
        machine = is_machine(verdict)
        if machine:
            log.info("an answering machine answered (%s): no conversation", verdict)
        await tenure.end(EndReason.MACHINE if machine else EndReason.CALLER_HUNG_UP)
        if ended is None or ended is CallEnd.STREAM_LOST:
            await self._close(CloseCode.NORMAL, "answering machine")
        return CallOutcome.COMPLETED

    async def _verdict(self, reader: asyncio.Task[CallEnd]) -> str | None:
        """None once a person answered (or no verdict came in time, or it was unsure);
        else the machine's verdict, or "" when the line ended first."""
        deadline = time.monotonic() + VERDICT_WAIT_S
        while time.monotonic() < deadline:
            done, _ = await asyncio.wait({reader}, timeout=VERDICT_POLL_S)
            facts = await self._facts()
            if done:  # the line ended: a machine's verdict may have ended it
                answered_by = facts.answered_by if facts is not None else ""
                return answered_by if is_machine(answered_by) else ""
            if facts is None or not facts.awaiting_verdict:
                answered_by = facts.answered_by if facts is not None else ""
                return answered_by if is_machine(answered_by) else None
        log.warning(
            "no answering-machine verdict within %.0f s: taking it as a person", VERDICT_WAIT_S
        )
        return None

    async def _until_stop(self) -> CallEnd:
        """Read the stream (its audio is not for anyone yet) until it stops."""
        while True:
            try:
                frame = await self._receive_frame()
            except WebSocketDisconnect:
                return CallEnd.STREAM_LOST
            try:
                event = parse_twilio_event(frame)
            except ProtocolError as exc:
                raise _malformed(exc) from None
            if type(event) is Media:
                if not self._pace.take(len(event.payload)):
                    raise _too_fast(self._pace)
                continue
            try:
                if isinstance(self._stream.after_start(event), Stop):
                    return CallEnd.CALLER_HUNG_UP
            except StreamViolation as exc:
                raise _violation(exc) from None

    # --- the recording ----------------------------------------------------------------------

    def _start_recording(self, facts: CallFacts | None) -> None:
        """A two-channel recording, asked of Twilio's REST API beside the call."""
        rest = self._resources.rest
        if facts is None or not facts.record or rest is None:
            return
        if facts.recording_status is not RecordingStatus.NONE:
            return  # an earlier stream of the call started it
        self._recording = asyncio.create_task(
            self._start_recording_now(rest), name="start_recording"
        )

    async def _start_recording_now(self, rest: TwilioCalls) -> None:
        ledger, sid = self._resources.ledger, self._call_sid
        try:
            if not await ledger.claim_recording(sid):
                return
            await ledger.note(sid, {"recording_status": RecordingStatus.STARTING.value})
            try:
                recording = await rest.start_recording(sid, self._resources.recording_callback)
            except TwilioCallError as exc:
                log.error("recording not started: %s", exc.reason)
                await ledger.note(
                    sid,
                    {
                        "recording_status": RecordingStatus.FAILED.value,
                        "recording_problem": exc.reason,
                    },
                )
                return
            log.info("recording the call (%s)", recording)
            await ledger.recording_started(sid, recording)
        except StoreUnavailable as exc:
            log.warning("recording state not kept: %s", exc.reason)

    async def _authenticated_start(self) -> tuple[Start, StreamGrant]:
        try:
            return await self._resources.authenticator.start(
                self._ws, self._receive_frame, self._stream
            )
        finally:
            self._count_unknown_events()

    async def _bridge(self, record: CallRecord, plan: CallPlan, tenure: Tenure) -> CallOutcome:
        """Open Gemini, run both pumps until one ends; returns the call's outcome."""
        resources = self._resources
        ending = self._ending = CallEnding(
            self._model,
            call_sid=self._call_sid,
            rest=resources.rest,
            say=self._say,
            close=self._close_normally,
            ended=tenure.end,
        )
        self._tools = ToolRunner(plan.tools(ending), self._answer_tool, resources.tool_timeout_s)
        link = self._link = GeminiLink(
            resources.open_session,
            plan.session_config,
            setup_timeout=resources.setup_timeout_s,
            turns=self._questions,
            transcript=self.transcript,
            policy=resources.link_policy,
            events=LinkEvents(
                on_reconnected=self._on_reconnected, on_nudge=self._metrics.nudges.inc
            ),
        )
        record.state_probe = lambda: link.state
        record.transcript_probe = self.transcript.tail
        try:
            how = await self._open_gemini(link, plan, tenure)
        except (GeminiSetupError, GeminiLinkLost) as exc:
            kind = exc.kind if isinstance(exc, GeminiSetupError) else SetupFailure.CLOSED
            resources.on_gemini_setup(False, exc.reason)
            self._metrics.gemini_setup_failures.labels(kind).inc()
            log.error("Gemini session did not open: %s", exc.reason)
            record.failure = f"Gemini did not open: {exc.reason}"
            await link.close()
            record.state_probe = lambda: LinkState.FAILED
            # Twilio's action request then gets the apology.
            await tenure.end(EndReason.GEMINI_FAILED)
            await self._close(CloseCode.INTERNAL, "assistant unavailable")
            return CallOutcome.GEMINI_UNAVAILABLE
        resources.on_gemini_setup(True, "")
        assert link.setup_seconds is not None
        record.gemini_setup_ms = link.setup_seconds * 1000
        self._metrics.gemini_setup_seconds.observe(link.setup_seconds)
        log.info("Gemini session %s in %.0f ms", how, link.setup_seconds * 1000)

        self._ready.set()
        self._watch.last_frame = time.perf_counter()
        tenure.start()
        pumps = [
            asyncio.create_task(self._caller_to_gemini(), name="caller_to_gemini"),
            asyncio.create_task(self._gemini_to_caller(), name="gemini_to_caller"),
            asyncio.create_task(self._watch.run(), name="wire_watch"),
            asyncio.create_task(self._moved_on(tenure), name="moved_on"),
        ]
        try:
            done, _ = await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pumps:
                task.cancel()
            results = await asyncio.gather(*pumps, return_exceptions=True)
            final_state = LinkState.FAILED if link.state is LinkState.FAILED else LinkState.CLOSED
            await self._tools.close()
            record.tool_calls = self._tools.completed + self._tools.failed
            await ending.close()
            await link.close()
            record.state_probe = lambda: final_state
        return await self._outcome(record, tenure, next(iter(done)), results)

    async def _open_gemini(self, link: GeminiLink, plan: CallPlan, tenure: Tenure) -> str:
        """The call's first Gemini connection on this stream; says how it was opened."""
        resources = self._resources
        if tenure.picks_up:  # the conversation began on an earlier stream
            shared = tenure.record
            self.transcript.restore(shared.turns)
            self._questions.restore_unanswered(await tenure.unanswered())
            resumed = await link.open_moved(
                shared.handle, answer_cut=shared.answer_started, heard=shared.heard
            )
            how = "resumed" if resumed else "fresh"
            self._metrics.moves.labels(how).inc()
            return f"picked up from stream {shared.stream - 1} ({how})"
        self._greeting_expected = bool(plan.persona.greeting)
        warm = await resources.prewarm.claim(self._call_sid) if resources.prewarm else None
        if warm is not None:
            await link.adopt(warm)  # its greeting was asked for at the webhook
            return "pre-warmed"
        await link.open()
        if plan.persona.greeting:
            await link.send(client_content_message(plan.persona.greeting))
        return "opened"

    async def _outcome(
        self,
        record: CallRecord,
        tenure: Tenure,
        first: asyncio.Task[CallEnd],
        results: list[CallEnd | BaseException],
    ) -> CallOutcome:
        """How the call ended, from the pump that ended it. The shared record says so before
        the stream closes: Twilio's action request, which the close brings, reads it."""
        assert self._ending is not None
        if self._ending.by_bridge:
            return CallOutcome.DRAINED  # whichever pump noticed the hang-up first
        if self._handing_over or tenure.lost.is_set():
            return CallOutcome.MOVED
        error = first.exception() if not first.cancelled() else None
        if isinstance(error, StreamRejected):
            self._metrics.stream_rejections.labels(error.rejection.value).inc()
            log.warning("stream closed: %s", error.reason)
            record.failure = error.reason
            await tenure.end(EndReason.FAILED)
            await self._close(error.code, error.reason)
            return CallOutcome.FAILED
        if isinstance(error, GeminiLinkLost):
            log.error("Gemini lost mid-call: %s", error.reason)
            record.failure = f"Gemini lost: {error.reason}"
            await tenure.end(EndReason.GEMINI_FAILED)
            await self._close(CloseCode.INTERNAL, "assistant disconnected")
            return CallOutcome.FAILED
        if error is not None:
            log.error("call failed: %s", _describe(error), exc_info=error)
            record.failure = "bridge error"
            await tenure.end(EndReason.FAILED)
            await self._close(CloseCode.INTERNAL, "bridge error")
            return CallOutcome.FAILED
        for result in results:
            if isinstance(result, Exception) and not isinstance(result, asyncio.CancelledError):
                log.warning("pump ended with %s while stopping", _describe(result))
        ended = first.result()
        if ended is CallEnd.CALLER_HUNG_UP:
            await tenure.end(EndReason.CALLER_HUNG_UP)
            await self._close(CloseCode.NORMAL, "call ended")
            return CallOutcome.COMPLETED
        if ended is CallEnd.STREAM_LOST:
            if tenure.ended is not None:  # closed by the bridge: end_call without REST
                return CallOutcome.COMPLETED
            log.warning("Twilio's stream closed without a stop: the call may go on elsewhere")
            await tenure.release(ReleaseReason.STREAM_LOST)
            return CallOutcome.MOVED
        record.failure = "Gemini closed the session"
        await tenure.end(EndReason.GEMINI_FAILED)
        await self._close(CloseCode.INTERNAL, "assistant disconnected")
        return CallOutcome.FAILED

    async def _moved_on(self, tenure: Tenure) -> CallEnd:
        await tenure.lost.wait()
        await self._close(CloseCode.NORMAL, "the call moved to another stream")
        return CallEnd.MOVED_ON

    def _conversation(self, shared: SharedCall) -> tuple[SharedCall, bytes | None]:
        """What a stream picking the call up would need, as of now."""
        questions = self._questions
        question = questions.unanswered_ulaw() or None
        answering = questions.answer_started
        handle = self._link.resumption_handle if self._link is not None else ""
        return (
            replace(
                shared,
                handle=handle or shared.handle,
                turns=tuple(self.transcript.turns),
                answer_started=answering,
                heard=self.transcript.open_answer() if answering else "",
                question=question is not None,
            ),
            question,
        )

    def _touch(self) -> None:
        self._activity.set()
        if self._tenure is not None:
            self._tenure.touch()

    def _on_reconnected(self, reason: SwapReason, gap_s: float, resumed: bool) -> None:
        """A new Gemini connection: whatever turn the old one was speaking is over (the link
        has the new one finish an answer it cut short)."""
        assert self._record is not None
        self._record.reconnects += 1
        self._metrics.reconnects.labels(reason.value, "resumed" if resumed else "fresh").inc()
        self._metrics.reconnect_gap_seconds.observe(gap_s)
        self._model.cut()
        self.transcript.end_turn()

    # --- caller → Gemini --------------------------------------------------------------------

    async def _caller_to_gemini(self) -> CallEnd:
        assert self._link is not None and self._record is not None
        link, record, per_frame = self._link, self._record, self._metrics.per_frame
        added = per_frame.added_to_gemini
        to_pcm, questions = self._caller_audio.to_gemini_pcm, self._questions
        watch, pace = self._watch, self._pace.take
        while True:
            try:
                frame = await self._receive_frame()
            except WebSocketDisconnect:
                return CallEnd.STREAM_LOST
            received = time.perf_counter()
            watch.last_frame = received
            try:
                event = parse_twilio_event(frame)
            except ProtocolError as exc:
                raise _malformed(exc) from None
            if type(event) is Media:
                if not pace(len(event.payload)):
                    raise _too_fast(self._pace)
                if event.track != "inbound":
                    continue
                pcm = to_pcm(event.payload)
                questions.on_caller_frame(event.payload, pcm)
                watch.sending_to_gemini = received
                await link.send_audio(pcm)
                watch.sending_to_gemini = None
                added.observe(time.perf_counter() - received)
                record.frames_in += 1
                per_frame.frames_in += 1
            elif await self._on_event(event) is CallEnd.CALLER_HUNG_UP:
                return CallEnd.CALLER_HUNG_UP

    async def _on_event(self, received: TwilioEvent) -> CallEnd | None:
        """Every event but media, in the stream's order."""
        assert self._link is not None
        try:
            event = self._stream.after_start(received)
        except StreamViolation as exc:
            raise _violation(exc) from None
        if isinstance(event, Mark):
            self._model.marked(event.name)
            self._changed()
        elif isinstance(event, Stop):
            return CallEnd.CALLER_HUNG_UP
        elif isinstance(event, Dtmf):
            log.info("caller pressed a key")
            await self._link.send(self._keypad_message(event.digit))
        elif event is None:
            self._count_unknown_events()
        return None

    def _count_unknown_events(self) -> None:
        """Twilio adds events over time and says to ignore those one does not know: each is
        counted, and the first of a call logged by name."""
        stream = self._stream
        if stream.unknown_events == self._unknown_events_counted:
            return
        if self._unknown_events_counted == 0:
            log.info("ignored a Twilio event this version does not know: %r", stream.first_unknown)
        self._metrics.unknown_events.inc(stream.unknown_events - self._unknown_events_counted)
        self._unknown_events_counted = stream.unknown_events

    async def _receive_frame(self) -> str | bytes:
        message = await self._ws.receive()
        if message["type"] == "websocket.disconnect":
            code = message.get("code", CloseCode.NORMAL)
            if code == CloseCode.TOO_BIG:  # uvicorn's own cap (ws_max_size) closed it
                raise StreamRejected(
                    "frame over the size cap", CloseCode.TOO_BIG, Rejection.PROTOCOL
                )
            if code == CloseCode.PROTOCOL_ERROR:  # uvicorn failed it: compressed or broken
                raise StreamRejected(
                    "broken WebSocket frames", CloseCode.PROTOCOL_ERROR, Rejection.PROTOCOL
                )
            raise WebSocketDisconnect(code)
        if not self._rate.take():
            raise StreamRejected(
                f"message flood (over {self._guards.flood_rate:g}/s sustained)",
                CloseCode.POLICY,
                Rejection.FLOOD,
            )
        text = message.get("text")
        return text if text is not None else message.get("bytes") or b""

    # --- Gemini → caller --------------------------------------------------------------------

    async def _gemini_to_caller(self) -> CallEnd:
        assert self._link is not None
        receive = self._link.receive
        while (message := await receive()) is not None:
            if message.server_content is not None:
                await self._on_server_content(message.server_content, time.perf_counter())
            if message.cancelled_tool_call_ids:
                self._tools.cancel(message.cancelled_tool_call_ids)
            if message.tool_calls:
                log.info("Gemini calls %s", [c.name for c in message.tool_calls])
                self._questions.on_model_tool_call()
                self._tools.start(message.tool_calls)
            if message.resumption_update is not None:
                self._touch()  # a new handle to resume from
            if message.unknown_fields:
                log.debug("Gemini sent unknown fields %s", message.unknown_fields)
        return CallEnd.GEMINI_LOST

    async def _on_server_content(self, content: ServerContent, received: float) -> None:
        # Order matters when one message combines fields: an interruption applies
        # before any audio that rides with it, and the turn closes after it.
        model = self._model
        if content.input_transcription is not None:
            self.transcript.add(Speaker.CALLER, content.input_transcription.text)
        if content.interrupted:
            await self._barge_in(received)
        if content.audio:
            if model.dropping:
                self._metrics.frames_interrupted.inc(model.frames_in(content.audio))
            else:
                audio = model.audio(content.audio)
                await self._send_audio(audio)
                if audio:
                    self._metrics.per_frame.added_to_caller.observe(time.perf_counter() - received)
                if (latency := model.answer_latency_s) is not None:
                    self._metrics.turn_latency_seconds.observe(latency)
                    assert self._record is not None
                    self._record.turn_latencies_ms.append(latency * 1000)
        if content.output_transcription is not None and not model.dropping:
            self.transcript.add(Speaker.ASSISTANT, content.output_transcription.text)
        if content.generation_complete or content.turn_complete:
            if not model.dropping:
                await self._send_audio(model.generated(), end_of_turn=True)
        if content.turn_complete:
            model.turn_complete()
            self.transcript.end_turn()
            self._changed()
            self._touch()

    async def _send_audio(self, audio: bytes, *, end_of_turn: bool = False) -> None:
        """Whole 20 ms frames of μ-law, in one media message (Twilio takes any size)."""
        frames = len(audio) // TWILIO_FRAME_BYTES
        mark = self._model.sent(frames, end_of_turn=end_of_turn)
        if not frames:
            if mark is not None:  # the turn's last frames went out unmarked
                async with asyncio.timeout(self._guards.send_timeout_s):
                    await self._ws.send_text(mark_message(self._stream_sid, mark))
            return
        assert self._record is not None
        sid, send, watch = self._stream_sid, self._ws.send_text, self._watch
        watch.sending_to_caller = time.perf_counter()
        await send(media_message(sid, audio))
        if mark is not None:
            await send(mark_message(sid, mark))
        watch.sending_to_caller = None
        record = self._record
        if record.first_audio_ms is None and self._model.first_audio_s is not None:
            record.first_audio_ms = self._model.first_audio_s * 1000
            if self._greeting_expected:
                self._metrics.greeting_seconds.observe(self._model.first_audio_s)
        record.frames_out += frames
        self._metrics.per_frame.frames_out += frames

    async def _barge_in(self, received: float) -> None:
        """The caller spoke over the model: stop Twilio's playback, drop the rest of the turn."""
        queued = self._model.interrupted()
        if queued is None:
            return
        async with asyncio.timeout(self._guards.send_timeout_s):
            await self._ws.send_text(clear_message(self._stream_sid))
        self._metrics.barge_in_seconds.observe(time.perf_counter() - received)
        self._metrics.frames_cleared.inc(queued)
        assert self._record is not None
        self._record.interruptions += 1
        self._metrics.interruptions.inc()
        self._changed()
        self._touch()
        log.info("caller interrupted: cleared playback")

    def _changed(self) -> None:
        """What the caller heard may have changed: an ending waiting on it looks again."""
        self._activity.set()
        if self._ending is not None:
            self._ending.changed.set()

    # --- ending the call from the bridge's side ----------------------------------------------

    async def end_with_goodbye(self, timeout_s: float) -> None:
        """The server is going away: the assistant says goodbye, then the call is hung up
        (through Twilio's REST API when it can be used; else the stream is closed)."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._ready.wait()  # a call still setting up gets its goodbye once ready
        except TimeoutError:
            pass
        if self._ending is None or not self._ready.is_set():
            if self._ending is not None:
                self._ending.by_bridge = True
            if self._tenure is not None:
                await self._tenure.end(EndReason.DRAINED)
            await self._close(CloseCode.NORMAL, "goodbye")
            return
        await self._ending.goodbye(self._resources.goodbye_instruction, timeout_s)

    async def hand_over(self, timeout_s: float) -> None:
        """The server is going away and another can take the call: at its next quiet
        moment (within ``timeout_s``) close Gemini, save the conversation, release the
        call and close the stream. Twilio then asks what next, and gets a new stream."""
        deadline = time.monotonic() + timeout_s
        try:
            async with asyncio.timeout(timeout_s):
                await self._ready.wait()
        except TimeoutError:
            pass
        if self._link is None or self._tenure is None or not self._ready.is_set():
            if self._tenure is not None:  # Twilio's next request must find it released
                await self._tenure.release(ReleaseReason.HANDED_OVER)
            await self._close(CloseCode.TRY_AGAIN, "server going away")
            return
        while not self._quiet() and (left := deadline - time.monotonic()) > 0:
            # What makes a call quiet comes as events (a turn's end, a mark's echo, the
            # caller falling silent); a tool's answer and the clock are looked at anyway.
            self._activity.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(left, QUIET_RECHECK_S)):
                    await self._activity.wait()
        self._handing_over = True
        log.info("handing the call over to another server")
        await self._link.close()  # before its handle is resumed elsewhere
        await self._tenure.release(ReleaseReason.HANDED_OVER)
        await self._close(CloseCode.NORMAL, "moving to another server")

    def _quiet(self) -> bool:
        questions = self._questions
        return not (
            questions.caller_speaking
            or questions.model_generating
            or questions.has_unanswered
            or self._model.playback.is_playing
            or self._tools.running
        )

    async def _say(self, instruction: str) -> None:
        assert self._link is not None
        await self._link.send(client_content_message(instruction))

    async def _answer_tool(self, response: FunctionResponse) -> None:
        result = "error" if "error" in response.response else "ok"
        self._metrics.tool_calls.labels(response.name, result).inc()
        if self._link is not None:
            await self._link.send_tool_response(response)

    @staticmethod
    def _keypad_message(digit: str) -> str:
        """As ``realtimeInput.text`` on both backends, as Google's SDK sends text input."""
        return text_input_message(f"(The caller pressed {digit} on the phone keypad.)")

    # --- the stream ---------------------------------------------------------------------------

    async def _close_normally(self, reason: str) -> None:
        await self._close(CloseCode.NORMAL, reason)

    async def _close(self, code: int, reason: str) -> None:
        if self._ws.application_state == WebSocketState.DISCONNECTED:
            return
        try:
            await self._ws.close(code, reason)
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass  # the peer is already gone


def _malformed(exc: ProtocolError) -> StreamRejected:
    return StreamRejected(f"malformed frame: {exc}", CloseCode.INVALID_DATA, Rejection.PROTOCOL)


def _too_fast(pace: AudioPace) -> StreamRejected:
    return StreamRejected(
        f"caller audio {pace.ahead_s:.1f} s ahead of the wall clock",
        CloseCode.POLICY,
        Rejection.AUDIO_TOO_FAST,
    )


def _violation(exc: StreamViolation) -> StreamRejected:
    return StreamRejected(str(exc), VIOLATION_CLOSE[exc.violation], Rejection.PROTOCOL)


def _describe(error: BaseException) -> str:
    return f"{error.__class__.__name__}: {str(error)[:200]}"
