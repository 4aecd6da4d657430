"""The books a server keeps on its calls: which it may take, which it has, how they ended.

Admission (capacity, reservations, draining), the records behind ``/api/calls/stats``
and the operator's gauges and counters are one set of books, kept in one place: a call
is entered with ``admit`` (a context manager), and whatever way it leaves, the gauge,
the totals, the outcome's counter and the list of recent calls move together.

A webhook that is answered reserves a place until its stream starts (or its token
expires), so a burst of calls cannot overshoot MAX_CONCURRENT_CALLS between the TwiML
and ``start``. Draining refuses new calls, lets the running ones finish, and after
DRAIN_TIMEOUT ends the rest with a spoken goodbye, before uvicorn closes any socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import statistics
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..observability.metrics import BridgeMetrics
from .outcome import CallOutcome, Rejection

log = logging.getLogger(__name__)

RESERVATION_S = 60.0  # as long as a stream token lives
RECENT_CALLS = 20  # ended calls the stats API (and the dashboard) show
TRANSCRIPT_TAIL = 6  # turns of a live call the stats API shows
MAX_LOGGED_TURNS = 10_000  # a call's whole transcript (it keeps at most 200)
# Callers that are not phone numbers, shown as they are: nothing to hide, much to tell apart.
NAMED_CALLERS = frozenset({"softphone"})
GOODBYE_TIMEOUT_S = 15.0  # a drained call's goodbye, said and played
# While draining, how long an answered webhook's stream is waited for: Twilio opens it
# within a second or two, and a stream that never comes must not hold the shutdown.
RESERVED_STREAM_WAIT_S = 10.0
RESERVED_POLL_S = 0.05  # while a drain waits for them


def _utc(wall: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(wall))


def mask_number(number: str) -> str:
    """``+14155550123`` → ``+*******0123``: enough to tell calls apart, not to call back."""
    if not number:
        return ""
    if number in NAMED_CALLERS:
        return number
    keep = 4 if len(number) > 6 else 0
    head = "+" if number.startswith("+") else ""
    hidden = len(number) - len(head) - keep
    return head + "*" * hidden + (number[-keep:] if keep else "")


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


@dataclass(slots=True)
class CallRecord:
    """One call as operators see it, kept up to date by the call."""

    call_sid: str
    stream_sid: str
    caller: str  # masked
    called: str = ""  # the number called (ours: a persona's, not the caller's)
    outcome: CallOutcome = CallOutcome.FAILED  # until the call says otherwise
    stream: int = 1  # which of the call's streams this is (more than 1: it moved here)
    failure: str = ""  # why the call failed, when it did (safe to show)
    started_at: float = field(default_factory=time.time)
    started_mono: float = field(default_factory=time.monotonic)
    frames_in: int = 0
    frames_out: int = 0
    interruptions: int = 0
    reconnects: int = 0
    tool_calls: int = 0
    state_probe: Callable[[], str] = lambda: "connecting"  # the Gemini link's state, live
    transcript_probe: Callable[[int], list[dict[str, str]]] = lambda n: []  # the last n turns
    gemini_setup_ms: float | None = None
    first_audio_ms: float | None = None
    turn_latencies_ms: list[float] = field(default_factory=list)  # at the wire, per answer

    @property
    def duration_s(self) -> float:
        return round(time.monotonic() - self.started_mono, 1)

    def snapshot(self) -> dict[str, Any]:
        latencies = self.turn_latencies_ms
        return {
            "call_sid": self.call_sid,
            "stream_sid": self.stream_sid,
            "caller": self.caller,
            "called": self.called,
            "stream": self.stream,
            "started_at": _utc(self.started_at),
            "duration_s": self.duration_s,
            "frames_in": self.frames_in,
            "frames_out": self.frames_out,
            "interruptions": self.interruptions,
            "gemini_state": self.state_probe(),
            "gemini_reconnects": self.reconnects,
            "gemini_setup_ms": _round(self.gemini_setup_ms),
            "first_audio_ms": _round(self.first_audio_ms),
            "turns": len(latencies),
            "last_turn_ms": _round(latencies[-1] if latencies else None),
            "median_turn_ms": _round(statistics.median(latencies) if latencies else None),
            "transcript_tail": self.transcript_probe(TRANSCRIPT_TAIL),
        }

    def summary(self) -> dict[str, Any]:
        """The figures of the call's one "call ended" log record."""
        return {
            "outcome": self.outcome.value,
            "duration_s": self.duration_s,
            "frames_in": self.frames_in,
            "frames_out": self.frames_out,
            "first_audio_ms": self.first_audio_ms and round(self.first_audio_ms),
            "gemini_setup_ms": self.gemini_setup_ms and round(self.gemini_setup_ms),
            "interruptions": self.interruptions,
            "reconnects": self.reconnects,
            "turn_latencies_ms": [round(ms) for ms in self.turn_latencies_ms],
            "tool_calls": self.tool_calls,
        }


class EndableCall(Protocol):
    async def end_with_goodbye(self, timeout_s: float) -> None: ...

    async def hand_over(self, timeout_s: float) -> None: ...


class NoRoom(Exception):
    """The instance is full (or draining): the stream is turned away."""


class CallRegistry:
    def __init__(
        self,
        max_calls: int | None,
        metrics: BridgeMetrics,
        clock: Callable[[], float] = time.monotonic,
        *,
        log_transcripts: bool = False,
    ) -> None:
        self.max_calls = max_calls
        self._log_transcripts = log_transcripts
        self.draining = False
        self._metrics = metrics
        self._clock = clock
        self._reserved: dict[str, float] = {}  # CallSid → reservation expiry
        self._calls: dict[EndableCall, CallRecord] = {}
        self._all_gone = asyncio.Event()
        self._all_gone.set()
        self._recent: deque[dict[str, Any]] = deque(maxlen=RECENT_CALLS)
        self.started_mono = clock()
        self.handled = 0
        self.completed = 0
        self.failed = 0

    # --- admission ------------------------------------------------------------------------------

    def _prune(self) -> None:
        now = self._clock()
        self._reserved = {sid: exp for sid, exp in self._reserved.items() if exp > now}

    @property
    def in_use(self) -> int:
        self._prune()
        return len(self._calls) + len(self._reserved)

    @property
    def has_room(self) -> bool:
        return not self.draining and (self.max_calls is None or self.in_use < self.max_calls)

    @property
    def not_ready_reason(self) -> str | None:
        if self.draining:
            return "draining"
        if not self.has_room:
            return "full"
        return None

    def reserve(self, call_sid: str) -> bool:
        """The webhook: take the call (True) or turn it away (False)."""
        if not self.has_room:
            return False
        self._reserved[call_sid] = self._clock() + RESERVATION_S
        return True

    def rekey(self, old: str, new: str) -> None:
        """A place reserved before the call had its CallSid (an outbound call being placed)."""
        if (expiry := self._reserved.pop(old, None)) is not None:
            self._reserved[new] = expiry

    def unreserve(self, call_sid: str) -> None:
        """A reservation that will not be used (the webhook was a replay)."""
        self._reserved.pop(call_sid, None)

    def rejected(self, rejection: Rejection) -> None:
        """A stream that never became a call."""
        self._metrics.stream_rejections.labels(rejection.value).inc()
        self._metrics.calls.labels(CallOutcome.REJECTED.value).inc()

    @contextlib.contextmanager
    def admit(
        self, call: EndableCall, call_sid: str, stream_sid: str, caller: str, called: str
    ) -> Iterator[CallRecord]:
        """The stream started: the call is on the books while the block runs. A reserved call
        always gets in; an unannounced one (its webhook reached another instance) only
        while there is room, else NoRoom."""
        if self._reserved.pop(call_sid, None) is None and not self.has_room:
            raise NoRoom
        record = CallRecord(call_sid, stream_sid, mask_number(caller), called)
        self._calls[call] = record
        self._all_gone.clear()
        self.handled += 1
        self._metrics.active_calls.inc()
        log.info(
            "call started",
            extra={"event": "call_started", "data": {"caller": record.caller, "to": called}},
        )
        try:
            yield record
        finally:
            del self._calls[call]
            if not self._calls:
                self._all_gone.set()
            self._metrics.active_calls.dec()
            self._metrics.calls.labels(record.outcome.value).inc()
            self._ended(record)
            self._log_end(record)

    def _log_end(self, record: CallRecord) -> None:
        """The call's one "call ended" record with its figures; its transcript as one more
        when LOG_TRANSCRIPTS asks for it (never a line per fragment)."""
        figures = record.summary()
        log.info(
            "call ended: %s after %.1f s, frames in %d out %d, interruptions %d, "
            "Gemini reconnects %d",
            record.outcome.value,
            figures["duration_s"],
            record.frames_in,
            record.frames_out,
            record.interruptions,
            record.reconnects,
            extra={"event": "call_ended", "data": figures},
        )
        turns = record.transcript_probe(MAX_LOGGED_TURNS) if self._log_transcripts else []
        if turns:
            log.info(
                "call transcript: %d turns",
                len(turns),
                extra={
                    "event": "transcript",
                    "data": {
                        "call_sid": record.call_sid,
                        "stream_sid": record.stream_sid,
                        "outcome": record.outcome.value,
                        "turns": turns,
                    },
                },
            )

    def _ended(self, record: CallRecord) -> None:
        if record.outcome.counts_as_completed:
            self.completed += 1
        else:
            self.failed += 1
        self._recent.appendleft(
            {
                "call_sid": record.call_sid,
                "caller": record.caller,
                "called": record.called,
                "started_at": _utc(record.started_at),
                "ended_at": _utc(time.time()),
                "duration_s": record.duration_s,
                "outcome": record.outcome.value,
                "failure": record.failure,
            }
        )

    # --- what operators see ---------------------------------------------------------------------

    @property
    def uptime_s(self) -> float:
        return round(self._clock() - self.started_mono, 1)

    @property
    def active_count(self) -> int:
        return len(self._calls)

    def snapshot(self) -> dict[str, Any]:
        return {
            "active_calls": [r.snapshot() for r in self._calls.values()],
            "recent_calls": list(self._recent),
            "totals": {
                "active": len(self._calls),
                "handled": self.handled,
                "completed": self.completed,
                "failed": self.failed,
            },
        }

    # --- draining -------------------------------------------------------------------------------

    async def drain(
        self,
        timeout_s: float,
        goodbye_timeout_s: float = GOODBYE_TIMEOUT_S,
        *,
        hand_over: bool = False,
    ) -> None:
        """Stop taking calls. ``hand_over`` (a fleet shares the calls' state): each call
        moves to another server at its next quiet moment. Otherwise the running calls may
        finish within ``timeout_s``; the rest end with a goodbye."""
        self.draining = True
        reserved = self.in_use - len(self._calls)
        log.info(
            "draining: %d calls running%s, %s",
            len(self._calls),
            f" and {reserved} answered whose streams have not started (waited for up to "
            f"{RESERVED_STREAM_WAIT_S:.0f} s)"
            if reserved
            else "",
            "handing them over" if hand_over else f"waiting up to {timeout_s:.0f} s",
        )
        if hand_over:
            await asyncio.gather(
                *(call.hand_over(timeout_s) for call in list(self._calls)),
                return_exceptions=True,
            )
            await self._until_gone(10)
            log.info("drained")
            return
        deadline = self._clock() + timeout_s
        reserved_until = min(deadline, self._clock() + RESERVED_STREAM_WAIT_S)

        def waiting() -> bool:
            return bool(self._calls) or (self.in_use > 0 and self._clock() < reserved_until)

        while self._clock() < deadline and waiting():
            wait_s = min(1.0, max(0.0, deadline - self._clock()))
            if not self._calls:  # only places whose streams may still come: look again soon
                await asyncio.sleep(min(wait_s, RESERVED_POLL_S))
                continue
            try:
                async with asyncio.timeout(wait_s):
                    await self._all_gone.wait()
            except TimeoutError:
                pass
        remaining = list(self._calls)
        if remaining:
            log.warning("drain timeout: ending %d calls with a goodbye", len(remaining))
            await asyncio.gather(
                *(call.end_with_goodbye(goodbye_timeout_s) for call in remaining),
                return_exceptions=True,
            )
            await self._until_gone(10)
        log.info("drained")

    async def _until_gone(self, timeout_s: float) -> None:
        try:
            async with asyncio.timeout(timeout_s):
                await self._all_gone.wait()
        except TimeoutError:
            log.error("%d calls still open after they were asked to end", len(self._calls))
