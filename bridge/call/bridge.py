"""One phone call: a Twilio Media Stream on one side, a Gemini Live session on the other.

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
(goodbye, hang-up, transfer) run as tasks the bridge owns and cancels.
Who may start a call at all is decided first, in ``stream_start``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from enum import Enum

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from ..audio import TWILIO_FRAME_BYTES, CallerAudioStream, ModelAudioStream
from ..gemini.link import GeminiLink, GeminiLinkLost, LinkEvents, LinkPolicy, SwapReason
from ..gemini.protocol import (
    FunctionResponse,
    ServerContent,
    client_content_message,
    text_input_message,
)
from ..gemini.session import GeminiSetupError
from ..observability.logs import tag_call
from ..runtime.services import Services
from ..tools import ToolRunner
from ..twilio.media_streams import (
    Dtmf,
    Mark,
    Media,
    ProtocolError,
    Start,
    Stop,
    UnknownEvent,
    clear_message,
    mark_message,
    media_message,
    parse_twilio_event,
)
from ..twilio.rest import TwilioCallError
from .audio_pace import AudioPace
from .playback import PlaybackTracker
from .rate_limit import TokenBucket
from .registry import CallRecord
from .stream_start import (
    CLOSE_INTERNAL,
    CLOSE_INVALID_DATA,
    CLOSE_NORMAL,
    CLOSE_POLICY,
    CLOSE_PROTOCOL_ERROR,
    CLOSE_TOO_BIG,
    CLOSE_TRY_AGAIN,
    Rejection,
    StreamRejected,
    accept_and_authenticate,
)
from .transcript import Transcript
from .turn_state import TurnState
from .wire_watch import WireWatch

log = logging.getLogger(__name__)

IDLE_TIMEOUT_S = 15.0  # Twilio sends a frame every 20 ms while the call lives
SEND_TIMEOUT_S = 5.0

AFTER_SPEECH_MAX_S = 20.0  # end_call / transfer act at the latest this long after the tool call
QUIET_MODEL_S = 3.0  # no new model turn this long after asking: go by what was queued

# Twilio sends 50 media frames a second plus mark echoes and the odd DTMF; a stream
# sending far more is broken or hostile and would starve the other calls' CPU.
FLOOD_RATE = 150.0
FLOOD_BURST = 300.0
# How far a stream's audio may run ahead of the time since its start (docs/security.md):
# more than the flood limit's burst (300 frames, 6 s), so Twilio's catch-up after a
# hiccup that passes the one passes the other.
AUDIO_AHEAD_S = 10.0


class CallEnd(Enum):
    CALLER_HUNG_UP = "caller hung up"
    GEMINI_LOST = "Gemini could not be kept connected"


class CallBridge:
    def __init__(self, websocket: WebSocket, services: Services) -> None:
        self._ws = websocket
        self._services = services
        self._metrics = services.metrics
        self._caller_audio = CallerAudioStream()
        self._model_audio = ModelAudioStream()
        self._playback = PlaybackTracker()
        self._watch = WireWatch(IDLE_TIMEOUT_S, SEND_TIMEOUT_S)
        self._rate = TokenBucket(FLOOD_RATE, FLOOD_BURST)
        self._pace = AudioPace(AUDIO_AHEAD_S)
        self._stream_sid = ""
        self._call_sid = ""
        self._called = ""
        self._tools = ToolRunner((), self._answer_tool, 1.0)
        self._greeting_expected = False
        self._after_speech: asyncio.Task[None] | None = None
        self._turn_started_at: float | None = None  # first audio of the model's current turn
        self._spoken_turn_started_at: float | None = None  # ... of its last completed turn
        self._ready = asyncio.Event()  # Gemini is open and the pumps run
        self._record: CallRecord | None = None
        self._ended_by_bridge = False  # the bridge hung up (drain), not the caller
        self._link: GeminiLink | None = None
        self._turns = TurnState()
        self.transcript = Transcript()
        self._model_turn_open = False  # model audio arrived and no turnComplete yet
        self._dropping_turn = False  # the caller interrupted this turn: drop its audio
        self._unknown_event_seen = False  # the first one of a call is logged, all are counted
        self._log = log

    # --- the call's life ------------------------------------------------------------------

    async def run(self) -> None:
        try:
            start = await accept_and_authenticate(self._ws, self._receive_frame, self._services)
        except StreamRejected as exc:
            self._metrics.stream_rejections.labels(exc.metric).inc()
            self._metrics.calls.labels("rejected").inc()
            log.warning("stream rejected: %s", exc.reason)
            await self._close(exc.code, exc.reason)
            return
        except WebSocketDisconnect:
            log.info("stream closed by Twilio before it started")
            return

        params = start.custom_parameters
        self._stream_sid = start.stream_sid
        self._call_sid = start.call_sid
        self._called = params.get("to", "")
        tag_call(start.call_sid, start.stream_sid)  # every later line of this call carries it
        self._pace.restart()
        admission = self._services.admission
        if not admission.admit(self, start.call_sid):
            self._metrics.stream_rejections.labels("over_capacity").inc()
            self._metrics.calls.labels("rejected").inc()
            self._log.warning("stream refused: no room on this instance")
            await self._close(CLOSE_TRY_AGAIN, "over capacity")
            return
        record = self._services.registry.begin(
            start.call_sid, start.stream_sid, params.get("from", ""), self._called
        )
        self._record = record
        self._metrics.active_calls.inc()
        self._log.info(
            "call started",
            extra={"event": "call_started", "data": {"caller": record.caller, "to": self._called}},
        )
        outcome = "failed"
        try:
            outcome = await self._bridge()
        finally:
            admission.release(self)
            self._metrics.active_calls.dec()
            self._metrics.calls.labels(outcome).inc()
            self._services.registry.end(
                record, completed=outcome in ("completed", "drained"), outcome=outcome
            )
            figures = record.summary(outcome, self._tools.completed + self._tools.failed)
            self._log.info(
                "call ended: %s after %.1f s, frames in %d out %d, interruptions %d, "
                "Gemini reconnects %d",
                outcome,
                figures["duration_s"],
                record.frames_in,
                record.frames_out,
                record.interruptions,
                record.reconnects,
                extra={"event": "call_ended", "data": figures},
            )
            if self._services.settings.log_transcripts and self.transcript.turns:
                # One structured record per call, never a line per fragment.
                record_json = {
                    "call_sid": record.call_sid,
                    "stream_sid": record.stream_sid,
                    "outcome": outcome,
                    "turns": self.transcript.tail(len(self.transcript.turns)),
                }
                self._log.info(
                    "call transcript: %d turns",
                    len(self.transcript.turns),
                    extra={"event": "transcript", "data": record_json},
                )

    async def _bridge(self) -> str:
        """Open Gemini, run both pumps until one ends; returns the call's outcome."""
        assert self._record is not None
        record, services, settings = self._record, self._services, self._services.settings
        persona = services.personas.for_number(self._called)
        self._tools = ToolRunner(
            services.tools_for(persona, self), self._answer_tool, settings.tool_timeout
        )
        link = GeminiLink(
            services.endpoint,
            services.session_config(persona, self._tools.declarations()),
            setup_timeout=settings.gemini_setup_timeout,
            turns=self._turns,
            transcript=self.transcript,
            policy=LinkPolicy(
                reconnect_budget_s=settings.gemini_reconnect_budget,
                stall_timeout_s=settings.gemini_stall_timeout,
            ),
            events=LinkEvents(
                on_reconnected=self._on_reconnected, on_nudge=self._metrics.nudges.inc
            ),
        )
        self._link = link
        self._greeting_expected = bool(persona.greeting)
        record.state_probe = lambda: link.state
        record.transcript_probe = lambda: self.transcript.tail(6)
        warm = None
        try:
            if settings.prewarm:
                warm = await services.prewarm.claim(self._call_sid)
            if warm is not None:
                await link.adopt(warm)  # its greeting was asked for at the webhook
            else:
                await link.open()
                if persona.greeting:
                    await link.send(client_content_message(persona.greeting))
        except GeminiSetupError as exc:
            services.gemini_watch.on_call_setup(False, exc.reason)
            self._metrics.gemini_setup_failures.labels(exc.kind).inc()
            self._log.error("Gemini session did not open: %s", exc.reason)
            record.failure = f"Gemini did not open: {exc.reason}"
            await link.close()
            record.state_probe = lambda: "failed"
            # Closing the stream lets Twilio speak the apology that follows <Connect>.
            await self._close(CLOSE_INTERNAL, "assistant unavailable")
            return "gemini_unavailable"
        services.gemini_watch.on_call_setup(True)
        self._log.info("Gemini session %s", "pre-warmed" if warm is not None else "opened")
        assert link.setup_seconds is not None
        record.gemini_setup_ms = link.setup_seconds * 1000
        self._metrics.gemini_setup_seconds.observe(link.setup_seconds)
        self._log.info("Gemini session open in %.0f ms", link.setup_seconds * 1000)

        self._ready.set()
        self._watch.last_frame = time.perf_counter()
        pumps = [
            asyncio.create_task(self._caller_to_gemini(), name="caller_to_gemini"),
            asyncio.create_task(self._gemini_to_caller(), name="gemini_to_caller"),
            asyncio.create_task(self._watch.run(), name="wire_watch"),
        ]
        try:
            done, _ = await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pumps:
                task.cancel()
            results = await asyncio.gather(*pumps, return_exceptions=True)
            final_state = "closed" if link.state != "failed" else "failed"
            await self._tools.close()
            if self._after_speech is not None:
                self._after_speech.cancel()
                await asyncio.gather(self._after_speech, return_exceptions=True)
            await link.close()
            record.state_probe = lambda: final_state

        if self._ended_by_bridge:
            return "drained"  # whichever pump noticed the hang-up first
        first = next(iter(done))
        error = first.exception() if not first.cancelled() else None
        if isinstance(error, StreamRejected):
            self._metrics.stream_rejections.labels(error.metric).inc()
            self._log.warning("stream closed: %s", error.reason)
            record.failure = error.reason
            await self._close(error.code, error.reason)
            return "failed"
        if isinstance(error, GeminiLinkLost):
            self._log.error("Gemini lost mid-call: %s", error.reason)
            record.failure = f"Gemini lost: {error.reason}"
            await self._close(CLOSE_INTERNAL, "assistant disconnected")
            return "failed"
        if error is not None:
            self._log.error("call failed: %s", _describe(error), exc_info=error)
            record.failure = "bridge error"
            await self._close(CLOSE_INTERNAL, "bridge error")
            return "failed"
        for result in results:
            if isinstance(result, Exception) and not isinstance(result, asyncio.CancelledError):
                self._log.warning("pump ended with %s while stopping", _describe(result))
        if first.result() is CallEnd.CALLER_HUNG_UP:
            await self._close(CLOSE_NORMAL, "call ended")
            return "completed"
        record.failure = "Gemini closed the session"
        await self._close(CLOSE_INTERNAL, "assistant disconnected")
        return "failed"

    def _on_reconnected(self, reason: SwapReason, gap_s: float, resumed: bool) -> None:
        """A new Gemini connection: whatever turn the old one was speaking is over (the link
        has the new one finish an answer it cut short)."""
        assert self._record is not None
        self._record.reconnects += 1
        self._metrics.reconnects.labels(reason.value, "resumed" if resumed else "fresh").inc()
        self._metrics.reconnect_gap_seconds.observe(gap_s)
        self._model_audio.discard()
        self._model_turn_open = False
        self._dropping_turn = False
        self.transcript.end_turn()

    # --- caller → Gemini --------------------------------------------------------------------

    async def _caller_to_gemini(self) -> CallEnd:
        assert self._link is not None and self._record is not None
        link, record, per_frame = self._link, self._record, self._metrics.per_frame
        added = per_frame.added_to_gemini
        to_pcm, turns = self._caller_audio.to_gemini_pcm, self._turns
        watch, pace = self._watch, self._pace.take
        while True:
            try:
                frame = await self._receive_frame()
            except WebSocketDisconnect:
                return CallEnd.CALLER_HUNG_UP
            received = time.perf_counter()
            watch.last_frame = received
            try:
                event = parse_twilio_event(frame)
            except ProtocolError as exc:
                raise StreamRejected(
                    f"malformed frame: {exc}", CLOSE_INVALID_DATA, "protocol"
                ) from None
            if isinstance(event, Media):
                if not pace(len(event.payload)):
                    raise StreamRejected(
                        f"caller audio {self._pace.ahead_s:.1f} s ahead of the wall clock",
                        CLOSE_POLICY,
                        Rejection.AUDIO_TOO_FAST,
                    )
                if event.track != "inbound":
                    continue
                pcm = to_pcm(event.payload)
                turns.on_caller_frame(event.payload, pcm)
                watch.sending_to_gemini = received
                await link.send_audio(pcm)
                watch.sending_to_gemini = None
                added.observe(time.perf_counter() - received)
                record.frames_in += 1
                per_frame.frames_in += 1
            elif isinstance(event, Mark):
                self._playback.on_mark(event.name)
            elif isinstance(event, Stop):
                return CallEnd.CALLER_HUNG_UP
            elif isinstance(event, Dtmf):
                self._log.info("caller pressed a key")
                await link.send(self._keypad_message(event.digit))
            elif isinstance(event, UnknownEvent):
                self._on_unknown_event(event)
            elif isinstance(event, Start):
                raise StreamRejected("second 'start' on one stream", CLOSE_POLICY, "protocol")

    def _on_unknown_event(self, event: UnknownEvent) -> None:
        """Twilio adds events over time and says to ignore those one does not know."""
        self._metrics.unknown_events.inc()
        if not self._unknown_event_seen:
            self._unknown_event_seen = True
            self._log.info("ignored a Twilio event this version does not know: %r", event.name)

    async def _receive_frame(self) -> str | bytes:
        message = await self._ws.receive()
        if message["type"] == "websocket.disconnect":
            code = message.get("code", 1000)
            if code == CLOSE_TOO_BIG:  # uvicorn's own cap (ws_max_size) closed it
                raise StreamRejected("frame over the size cap", CLOSE_TOO_BIG, "protocol")
            if code == CLOSE_PROTOCOL_ERROR:  # uvicorn failed it: compressed or broken frames
                raise StreamRejected("broken WebSocket frames", code, Rejection.PROTOCOL)
            raise WebSocketDisconnect(code)
        if not self._rate.take():
            raise StreamRejected(
                f"message flood (over {FLOOD_RATE:g}/s sustained)", CLOSE_POLICY, "flood"
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
                self._log.info("Gemini calls %s", [c.name for c in message.tool_calls])
                self._turns.on_model_tool_call()
                self._tools.start(message.tool_calls)
            if message.unknown_fields:
                self._log.debug("Gemini sent unknown fields %s", message.unknown_fields)
        return CallEnd.GEMINI_LOST

    async def _on_server_content(self, content: ServerContent, received: float) -> None:
        # Order matters when one message combines fields: an interruption applies
        # before any audio that rides with it, and the turn closes after it.
        if content.input_transcription is not None:
            self.transcript.add("caller", content.input_transcription.text)
        if content.interrupted:
            self._turns.on_model_interrupted()
            await self._barge_in(received)
        if content.audio and self._dropping_turn:
            samples = sum(len(chunk) for chunk in content.audio) // 2
            self._metrics.frames_interrupted.inc(samples / 3 / 160)
        elif content.audio:
            turns, answering = self._turns, None
            if not self._model_turn_open:
                # A new answer to the caller's turn: time it from their last voiced frame.
                if turns.awaiting_answer:
                    answering = turns.last_voiced_at
                self._turn_started_at = time.monotonic()
                self._model_turn_open = True
            turns.on_model_audio()
            chunks, to_twilio = content.audio, self._model_audio.to_twilio_audio
            # Gemini's messages carry one chunk: then no list and no join (in Python 3.11
            # a comprehension is a function call of its own; this line runs 50 times a second)
            audio = to_twilio(chunks[0]) if len(chunks) == 1 else b"".join(map(to_twilio, chunks))
            await self._send_audio(audio)
            if audio:
                self._metrics.per_frame.added_to_caller.observe(time.perf_counter() - received)
            if answering is not None:
                turn_latency = time.monotonic() - answering
                self._metrics.turn_latency_seconds.observe(turn_latency)
                assert self._record is not None
                self._record.turn_latencies_ms.append(turn_latency * 1000)
        if content.output_transcription is not None and not self._dropping_turn:
            self.transcript.add("assistant", content.output_transcription.text)
        if content.generation_complete or content.turn_complete:
            if not self._dropping_turn:
                await self._send_audio(b"".join(self._model_audio.flush()), end_of_turn=True)
        if content.turn_complete:
            if self._turn_started_at is not None:
                self._spoken_turn_started_at = self._turn_started_at
            self._turn_started_at = None
            self._model_turn_open = False
            self._dropping_turn = False
            self._turns.on_model_turn_complete()
            self.transcript.end_turn()

    async def _send_audio(self, audio: bytes, *, end_of_turn: bool = False) -> None:
        """Whole 20 ms frames of μ-law, in one media message (Twilio takes any size)."""
        frames = len(audio) // TWILIO_FRAME_BYTES
        mark = self._playback.on_sent(frames, end_of_turn=end_of_turn)
        if not frames:
            if mark is not None:  # the turn's last frames went out unmarked
                async with asyncio.timeout(SEND_TIMEOUT_S):
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
        if record.first_audio_ms is None:
            record.first_audio_ms = (time.monotonic() - record.started_mono) * 1000
            if self._greeting_expected:
                self._metrics.greeting_seconds.observe(record.first_audio_ms / 1000)
        record.frames_out += frames
        self._metrics.per_frame.frames_out += frames

    async def _barge_in(self, received: float) -> None:
        """The caller spoke over the model: stop Twilio's playback, drop the rest of the turn."""
        assert self._record is not None
        self._model_audio.discard()
        self._dropping_turn = self._model_turn_open
        if self._playback.is_playing:
            async with asyncio.timeout(SEND_TIMEOUT_S):
                await self._ws.send_text(clear_message(self._stream_sid))
            self._metrics.barge_in_seconds.observe(time.perf_counter() - received)
            self._metrics.frames_cleared.inc(self._playback.queued_ms / 20)
            self._playback.on_clear()
            self._record.interruptions += 1
            self._metrics.interruptions.inc()
            self._log.info("caller interrupted: cleared playback")

    # --- ending the call from the bridge's side ----------------------------------------------

    async def end_with_goodbye(self, timeout_s: float) -> None:
        """The server is going away: the assistant says goodbye, then the call is hung up.

        Hung up through Twilio's REST API when credentials allow it; otherwise
        the stream is closed and Twilio speaks the TwiML that follows.
        """
        try:
            async with asyncio.timeout(timeout_s):
                await self._ready.wait()  # a call still setting up gets its goodbye once ready
        except TimeoutError:
            pass
        if self._link is None or not self._ready.is_set():
            self._ended_by_bridge = True
            await self._close(CLOSE_NORMAL, "goodbye")
            return
        self._log.info("ending the call: asking the assistant to say goodbye")
        asked = time.monotonic()
        await self._link.send(client_content_message(self._services.twiml.goodbye_instruction))
        await self._wait_until_spoken(asked, timeout_s)
        self._ended_by_bridge = True
        if not await self._rest("hang up", self._call_sid, None):
            await self._close(CLOSE_NORMAL, "goodbye")

    # The built-in tools' CallControl: act once the assistant's last words have played.

    def end_after_speech(self) -> None:
        self._act_after_speech("hang up", None)

    def transfer_after_speech(self, number: str) -> None:
        self._act_after_speech("transfer", number)

    def _act_after_speech(self, action: str, number: str | None) -> None:
        if self._after_speech is not None:
            return  # the first decision stands
        self._after_speech = asyncio.create_task(
            self._after_speaking(action, number, time.monotonic()), name=f"after_speech:{action}"
        )

    async def _after_speaking(self, action: str, number: str | None, asked: float) -> None:
        await self._wait_until_spoken(asked, AFTER_SPEECH_MAX_S)
        if not await self._rest(action, self._call_sid, number) and action == "hang up":
            await self._close(CLOSE_NORMAL, "assistant ended the call")
        # A transfer ends the stream from Twilio's side ('stop'): never close it here,
        # or the call could end before the <Dial> runs.

    async def _wait_until_spoken(self, asked: float, timeout_s: float) -> None:
        """Until a model turn that began speaking after ``asked`` has completed and Twilio
        has played it (mark echoes). If the model says nothing new for a while, what was
        already queued must still play out."""
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    started = self._spoken_turn_started_at
                    spoke = started is not None and started >= asked
                    silent = not self._model_turn_open and time.monotonic() - asked > QUIET_MODEL_S
                    if (spoke or silent) and not self._playback.is_playing:
                        return
                    await asyncio.sleep(0.05)
        except TimeoutError:
            self._log.warning("last words not played within %.0f s; acting anyway", timeout_s)

    async def _rest(self, action: str, call_sid: str, number: str | None) -> bool:
        rest = self._services.twilio_calls
        if rest is None:
            return False
        try:
            if action == "transfer" and number is not None:
                await rest.transfer(call_sid, number)
            else:
                await rest.hang_up(call_sid)
            self._log.info("Twilio: %s%s", action, f" to {number}" if number else "")
            return True
        except TwilioCallError as exc:
            self._log.error("Twilio REST %s failed: %s", action, exc.reason)
            return False

    async def _answer_tool(self, response: FunctionResponse) -> None:
        result = "error" if "error" in response.response else "ok"
        self._metrics.tool_calls.labels(response.name, result).inc()
        if self._link is not None:
            await self._link.send_tool_response(response)

    @staticmethod
    def _keypad_message(digit: str) -> str:
        """As ``realtimeInput.text`` on both backends, as Google's SDK sends text input."""
        return text_input_message(f"(The caller pressed {digit} on the phone keypad.)")

    # --- helpers ----------------------------------------------------------------------------

    async def _close(self, code: int, reason: str) -> None:
        if self._ws.application_state == WebSocketState.DISCONNECTED:
            return
        try:
            await self._ws.close(code, reason)
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass  # the peer is already gone


def _describe(error: BaseException) -> str:
    return f"{error.__class__.__name__}: {str(error)[:200]}"
