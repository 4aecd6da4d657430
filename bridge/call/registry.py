"""The calls this process is handling now, and totals since it started, for operators."""

from __future__ import annotations

import statistics
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

RECENT_CALLS = 20  # ended calls the stats API (and the dashboard) show
# Callers that are not phone numbers, shown as they are: nothing to hide, much to tell apart.
NAMED_CALLERS = frozenset({"softphone"})


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


@dataclass(slots=True)
class CallRecord:
    call_sid: str
    stream_sid: str
    caller: str  # masked
    called: str = ""  # the number called (ours: a persona's, not the caller's)
    failure: str = ""  # why the call failed, when it did (safe to show)
    started_at: float = field(default_factory=time.time)
    started_mono: float = field(default_factory=time.monotonic)
    frames_in: int = 0
    frames_out: int = 0
    interruptions: int = 0
    reconnects: int = 0
    state_probe: Callable[[], str] = lambda: "connecting"  # the Gemini link's state, live
    transcript_probe: Callable[[], list[dict[str, str]]] = lambda: []  # the last turns
    gemini_setup_ms: float | None = None
    first_audio_ms: float | None = None
    turn_latencies_ms: list[float] = field(default_factory=list)  # at the wire, per answer

    def snapshot(self) -> dict[str, Any]:
        return {
            "call_sid": self.call_sid,
            "stream_sid": self.stream_sid,
            "caller": self.caller,
            "called": self.called,
            "started_at": _utc(self.started_at),
            "duration_s": round(time.monotonic() - self.started_mono, 1),
            "frames_in": self.frames_in,
            "frames_out": self.frames_out,
            "interruptions": self.interruptions,
            "gemini_state": self.state_probe(),
            "gemini_reconnects": self.reconnects,
            "gemini_setup_ms": _round(self.gemini_setup_ms),
            "first_audio_ms": _round(self.first_audio_ms),
            "turns": len(self.turn_latencies_ms),
            "last_turn_ms": _round(self.turn_latencies_ms[-1] if self.turn_latencies_ms else None),
            "median_turn_ms": _round(
                statistics.median(self.turn_latencies_ms) if self.turn_latencies_ms else None
            ),
            "transcript_tail": self.transcript_probe(),
        }

    def summary(self, outcome: str, tool_calls: int) -> dict[str, Any]:
        """The figures of the call's one "call ended" log record."""
        return {
            "outcome": outcome,
            "duration_s": round(time.monotonic() - self.started_mono, 1),
            "frames_in": self.frames_in,
            "frames_out": self.frames_out,
            "first_audio_ms": self.first_audio_ms and round(self.first_audio_ms),
            "gemini_setup_ms": self.gemini_setup_ms and round(self.gemini_setup_ms),
            "interruptions": self.interruptions,
            "reconnects": self.reconnects,
            "turn_latencies_ms": [round(ms) for ms in self.turn_latencies_ms],
            "tool_calls": tool_calls,
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


class CallRegistry:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._active: dict[str, CallRecord] = {}
        self._recent: deque[dict[str, Any]] = deque(maxlen=RECENT_CALLS)
        self._clock = clock
        self.started_mono = clock()
        self.handled = 0
        self.completed = 0
        self.failed = 0

    def begin(
        self, call_sid: str, stream_sid: str, caller_number: str, called_number: str = ""
    ) -> CallRecord:
        record = CallRecord(call_sid, stream_sid, mask_number(caller_number), called_number)
        self._active[stream_sid] = record
        self.handled += 1
        return record

    def end(self, record: CallRecord, *, completed: bool, outcome: str = "") -> None:
        if self._active.pop(record.stream_sid, None) is None:
            return
        if completed:
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
                "duration_s": round(time.monotonic() - record.started_mono, 1),
                "outcome": outcome or ("completed" if completed else "failed"),
                "failure": record.failure,
            }
        )

    @property
    def uptime_s(self) -> float:
        return round(self._clock() - self.started_mono, 1)

    @property
    def active_count(self) -> int:
        return len(self._active)

    def snapshot(self) -> dict[str, Any]:
        return {
            "active_calls": [r.snapshot() for r in self._active.values()],
            "recent_calls": list(self._recent),
            "totals": {
                "active": len(self._active),
                "handled": self.handled,
                "completed": self.completed,
                "failed": self.failed,
            },
        }
