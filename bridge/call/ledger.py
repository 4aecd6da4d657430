"""Each call's ledger in the fleet's store: its facts, a segment per stream, and the one
report it gets when it is over.

A call is over when one of three things says so, whichever comes first, and its report
is queued exactly once across the fleet (the ``reported:<CallSid>`` claim):

* the stream that ends it by design (the caller hung up, ``end_call``, a transfer, a
  drain's goodbye, Gemini failing, an answering machine): it writes its own segment
  first, so the report has all of the conversation;
* Twilio's final call status (``/api/call-status``) for a call no stream ended: one
  never answered (busy, no-answer), one whose stream never came, one that ended while
  moving between servers. While a stream still holds the call on a live server, the
  report is left to that stream: the status callback looks again for a while;
* the webhook that turns a call away.

The report goes to the outbox (``hooks/outbox.py``), which delivers it beside the
calls; while the call's recording is still being processed it waits for the
recording's callback, at most RECORDING_WAIT_S.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from ..hooks.outbox import Envelope, ReportOutbox
from ..state import Claim, StoreUnavailable
from .facts import CallFacts, RecordingStatus
from .fleet import FleetCalls
from .report import Closing, StreamSegment, build_report, with_recording
from .shared_call import CallStatus

log = logging.getLogger(__name__)

FACTS_TTL_S = 24 * 3600.0
REPORTED_TTL_S = 24 * 3600.0
RECORDING_WAIT_S = 180.0  # Twilio's recording callback comes seconds after the call
# After Twilio says a call completed while a stream of ours still held it: how long the
# stream is given to end it (and report it) before the status callback reports it.
STREAM_END_WAIT_S = 30.0
STREAM_END_POLL_S = 0.5
WATCH_STOP_S = 3.0  # a store operation under way is bounded by the store's own timeouts


class CallLedger:
    def __init__(
        self,
        fleet: FleetCalls,
        outbox: ReportOutbox,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._fleet = fleet
        self._store = fleet.store
        self.outbox = outbox
        self._wall = wall_clock
        self._watching: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        outbox.complete = self._complete

    # --- facts ----------------------------------------------------------------------------------

    async def write_facts(self, facts: CallFacts) -> None:
        await self._store.set_fields(f"facts:{facts.call_sid}", facts.fields(), FACTS_TTL_S)

    async def write_order(self, order: str, facts: CallFacts) -> None:
        """An outbound call's facts before Twilio has given it a CallSid: should the answer
        to the REST request be lost, the call's first callback still finds them."""
        await self._store.set_fields(f"order:{order}", facts.fields(), FACTS_TTL_S)

    async def facts_of(self, call_sid: str, order: str | None) -> CallFacts | None:
        """The call's facts; for an outbound call whose CallSid never came back from the
        REST request, those of its ``order``, adopted under its CallSid now."""
        facts = await self.facts(call_sid)
        if facts is not None or not order:
            return facts
        fields = await self._store.get_fields(f"order:{order}")
        if not fields:
            return None
        await self._store.set_fields(f"facts:{call_sid}", fields, FACTS_TTL_S)
        log.warning("call %s: adopted the facts of order %s", call_sid, order)
        return await self.facts(call_sid)

    async def note(self, call_sid: str, fields: dict[str, str]) -> None:
        """Some facts learnt later (a verdict, a recording), written beside the others."""
        await self._store.set_fields(f"facts:{call_sid}", fields, FACTS_TTL_S)

    async def facts(self, call_sid: str) -> CallFacts | None:
        fields = await self._store.get_fields(f"facts:{call_sid}")
        if not fields:
            return None
        try:
            return CallFacts.from_fields(call_sid, fields)
        except ValueError as exc:
            log.error("call %s: %s", call_sid, exc)
            return None

    async def claim_recording(self, call_sid: str) -> bool:
        """Only one stream of a call starts its recording."""
        claim = await self._store.claim(f"recording:{call_sid}", FACTS_TTL_S)
        return claim is not Claim.TAKEN

    async def recording_started(self, call_sid: str, recording_sid: str) -> None:
        """Unless Twilio's callback has already said how it ended (a very short call)."""
        fields = {
            "recording_sid": recording_sid,
            "recording_status": RecordingStatus.RECORDING.value,
        }
        key = f"facts:{call_sid}"
        starting = {"recording_status": RecordingStatus.STARTING.value}
        if not await self._store.set_fields(key, fields, FACTS_TTL_S, only_if=starting):
            await self._store.set_fields(key, {"recording_sid": recording_sid}, FACTS_TTL_S)

    # --- segments -------------------------------------------------------------------------------

    async def stream_over(
        self, call_sid: str, segment: StreamSegment, closing: Closing | None
    ) -> None:
        """A stream ended: its segment is kept; ``closing`` when the call ended with it."""
        if not self.outbox.enabled:  # no reports: nothing to keep, nothing kept longer
            if closing is not None:
                with contextlib.suppress(StoreUnavailable):
                    await self._store.delete(f"facts:{call_sid}")
            return
        try:
            await self._store.put_blob(
                f"segment:{call_sid}:{segment.stream}", segment.to_json(), FACTS_TTL_S
            )
            if closing is not None:
                await self.close(call_sid, closing)
        except StoreUnavailable as exc:
            log.error("call report not kept: %s", exc.reason)

    async def _segments(self, call_sid: str, last: int) -> list[StreamSegment]:
        found = []
        for stream in range(1, last + 1):
            data = await self._store.get_blob(f"segment:{call_sid}:{stream}")
            if data is None:
                continue
            try:
                found.append(StreamSegment.from_json(data))
            except (ValueError, TypeError) as exc:
                log.error("call %s: unreadable segment (%s)", call_sid, exc.__class__.__name__)
        return found

    # --- the one report -------------------------------------------------------------------------

    async def close(self, call_sid: str, closing: Closing) -> bool:
        """The call is over: queue its report, unless another server (or an earlier
        signal) already did. Returns whether this one did."""
        if not self.outbox.enabled:
            return False
        if await self._store.claim(f"reported:{call_sid}", REPORTED_TTL_S) is Claim.TAKEN:
            return False
        facts = await self.facts(call_sid)
        record = await self._fleet.read(call_sid)
        last = record.stream if record is not None else self._fleet.max_moves + 1
        segments = await self._segments(call_sid, last)
        moves = record.moves if record is not None else max(0, len(segments) - 1)
        report = build_report(
            call_sid, facts, segments, closing, ended_at=self._wall(), moves=moves,
            shared_turns=record.turns if record is not None else (),
        )  # fmt: skip
        waiting = facts is not None and facts.record and not facts.recording_status.settled
        await self.outbox.put(call_sid, report, RECORDING_WAIT_S if waiting else 0.0)
        for segment in segments:  # in the report now: the transcripts need not stay
            await self._store.delete(f"segment:{call_sid}:{segment.stream}")
        log.info(
            "call over (%s, %s): report queued",
            closing.outcome.value,
            closing.reason,
            extra={"event": "report_queued", "data": {"call_sid": call_sid}},
        )
        return True

    async def _complete(self, envelope: Envelope, final: bool) -> tuple[dict[str, Any], bool]:
        """A held report: ready once the recording has settled (or the wait is over)."""
        facts = await self.facts(envelope.key)
        if facts is None:
            return envelope.payload, True
        if facts.recording_status.settled or final:
            return with_recording(envelope.payload, facts), True
        return envelope.payload, False

    # --- Twilio's final word ----------------------------------------------------------------------

    async def twilio_ended(self, call_sid: str, status: str, duration_s: int | None) -> None:
        """Twilio's final status for the call. It reports the call now if no stream of
        ours holds it; else it watches (a task of its own) until that stream has ended
        it or is gone."""
        if not self.outbox.enabled:
            return
        fields = {"twilio_status": status}
        if duration_s is not None:
            fields["twilio_duration_s"] = str(duration_s)
        await self.note(call_sid, fields)
        if await self._settle(call_sid, status):
            return
        task = asyncio.create_task(self._watch(call_sid, status), name="report_watch")
        self._watching.add(task)
        task.add_done_callback(self._watching.discard)

    async def _settle(self, call_sid: str, status: str) -> bool:
        """Report the call if no live stream holds it; True when nothing is left to wait."""
        record = await self._fleet.read(call_sid)
        if record is not None and record.status is CallStatus.ENDED:
            return True  # its stream (or the action request) ended it and reported it
        if record is not None and record.status is CallStatus.LIVE:
            if await self._fleet.is_alive(record.owner):
                return False
        facts = await self.facts(call_sid)
        last = record.stream if record is not None else self._fleet.max_moves + 1
        # A stream held it (its server died before it saved its part, maybe) or a later
        # stream was handed out: the call was under way.
        had_streams = bool(await self._segments(call_sid, last)) or (
            record is not None
            and (record.status in (CallStatus.LIVE, CallStatus.RELEASED) or record.stream > 1)
        )
        await self.close(call_sid, Closing.by_twilio(status, facts, had_streams))
        return True

    async def _watch(self, call_sid: str, status: str) -> None:
        deadline = time.monotonic() + STREAM_END_WAIT_S
        while time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(STREAM_END_POLL_S):
                    await self._stopping.wait()
            if self._stopping.is_set():
                return  # shutting down: the call's stream, wherever it is, reports it
            try:
                if await self._settle(call_sid, status):
                    return
            except StoreUnavailable as exc:
                log.warning("call %s: report watch: %s", call_sid, exc.reason)
        log.warning("call %s: Twilio ended it but its stream never did: reporting it", call_sid)
        with contextlib.suppress(StoreUnavailable):
            await self.close(call_sid, Closing.by_twilio(status, None, True))

    async def close_watches(self) -> None:
        """Stopped by asking, never cancelled mid-write (see ``tenure.py``)."""
        self._stopping.set()
        if not self._watching:
            return
        _, pending = await asyncio.wait(list(self._watching), timeout=WATCH_STOP_S)
        for task in pending:
            task.cancel()
