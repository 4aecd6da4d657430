"""A call's report, as the operator's system receives it at CALL_REPORT_URL. No I/O.

One report per call, built when the call is over from its facts (``facts.py``), its
shared record and one segment per stream (a call that moved between servers had
several). Its JSON (documented in docs/reports.md)::

    call_sid, direction, from, to, persona, persona_source, variables,
    started_at, answered_at, ended_at, duration_s,      (ISO 8601 UTC; seconds)
    outcome, reason, answered_by,
    transcript: [{speaker, text, at_s}],                (at_s: seconds from the start)
    tool_calls: [{name, args, result | error, at_s, ms}],
    latency: {first_audio_ms, turn_ms: [...]},
    gemini_reconnects, moves, streams: [{stream, server, outcome, ...}],
    recording: {sid, url, duration_s, channels, status} | null
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from .facts import CallFacts, RecordingStatus, is_machine
from .shared_call import EndReason
from .transcript import Turn

REPORT_VERSION = 1


class ReportOutcome(StrEnum):
    COMPLETED = "completed"  # a conversation that ended as calls end (either side hung up)
    TRANSFERRED = "transferred"
    VOICEMAIL = "voicemail"  # an answering machine: the message left, or hung up on
    NO_ANSWER = "no_answer"
    BUSY = "busy"
    CANCELED = "canceled"
    TURNED_AWAY = "turned_away"  # no room (or a drain): the busy answer, nothing else
    FAILED = "failed"  # Gemini or the bridge failed, or the stream never came


END_OUTCOMES = {
    EndReason.CALLER_HUNG_UP: ReportOutcome.COMPLETED,
    EndReason.END_CALL: ReportOutcome.COMPLETED,
    EndReason.DRAINED: ReportOutcome.COMPLETED,
    EndReason.TRANSFERRED: ReportOutcome.TRANSFERRED,
    EndReason.MACHINE: ReportOutcome.VOICEMAIL,
}
TWILIO_OUTCOMES = {
    "busy": ReportOutcome.BUSY,
    "no-answer": ReportOutcome.NO_ANSWER,
    "canceled": ReportOutcome.CANCELED,
    "failed": ReportOutcome.FAILED,
}
FINAL_STATUSES = frozenset({"completed", *TWILIO_OUTCOMES})


@dataclass(frozen=True, slots=True)
class Closing:
    """How the call came to be over, as its report says it."""

    outcome: ReportOutcome
    reason: str

    @classmethod
    def ended(cls, reason: EndReason) -> Closing:
        return cls(END_OUTCOMES.get(reason, ReportOutcome.FAILED), reason.value)

    @classmethod
    def by_twilio(cls, status: str, facts: CallFacts | None, had_streams: bool) -> Closing:
        """Twilio's final status for a call no stream of ours ended (it never reached one,
        or the line closed between two)."""
        if status in TWILIO_OUTCOMES:
            return cls(TWILIO_OUTCOMES[status], status.replace("-", "_"))
        if facts is not None and is_machine(facts.answered_by):
            return cls(ReportOutcome.VOICEMAIL, "machine_hung_up")
        if had_streams:
            return cls(ReportOutcome.COMPLETED, "caller_hung_up")  # between two streams
        return cls(ReportOutcome.FAILED, "stream_never_started")


@dataclass(slots=True)
class StreamSegment:
    """What one stream of the call saw, written when it ends."""

    stream: int
    server: str
    started_at: float
    ended_at: float
    outcome: str  # the stream's CallOutcome
    failure: str = ""
    gemini_setup_ms: float | None = None
    first_audio_ms: float | None = None
    turn_ms: list[float] = field(default_factory=list)
    reconnects: int = 0
    interruptions: int = 0
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    transcript: list[dict[str, Any]] = field(default_factory=list)  # speaker, text, at

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), ensure_ascii=False, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> StreamSegment:
        return cls(**json.loads(data))


def iso(wall: float | None) -> str | None:
    if not wall:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(wall)) + f".{int(wall % 1 * 1000):03d}Z"


def _offset(at: float, start: float) -> float:
    return round(max(0.0, at - start), 1) if at and start else 0.0


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def build_report(
    call_sid: str,
    facts: CallFacts | None,
    segments: list[StreamSegment],
    closing: Closing,
    *,
    ended_at: float,
    moves: int = 0,
    shared_turns: tuple[Turn, ...] = (),
) -> dict[str, Any]:
    """``shared_turns``: the call's shared transcript, for a call whose last stream left
    no segment (its server died)."""
    facts = facts or CallFacts(call_sid)
    start = facts.started_at or (segments[0].started_at if segments else ended_at)
    # Each stream's own turns, whole, in order; the shared record's (the last 60, cut
    # short) only when streams left no part (their server died) and it holds more.
    turns: list[dict[str, Any]] = [t for s in segments for t in s.transcript]
    if len(shared_turns) > len(turns):
        turns = [{"speaker": t.speaker.value, "text": t.text, "at": t.at} for t in shared_turns]
    transcript = [
        {"speaker": t["speaker"], "text": t["text"], "at_s": _offset(t.get("at", 0), start)}
        for t in turns
    ]
    tool_calls = [
        {**{k: v for k, v in call.items() if k != "at"}, "at_s": _offset(call.get("at", 0), start)}
        for segment in segments
        for call in segment.tool_calls
    ]
    answered = facts.answered_at or (segments[0].started_at if segments else 0.0)
    first_audio = next((s.first_audio_ms for s in segments if s.first_audio_ms is not None), None)
    report: dict[str, Any] = {
        "version": REPORT_VERSION,
        "call_sid": call_sid,
        "direction": facts.direction.value,
        "from": facts.caller,
        "to": facts.called,
        "persona": facts.persona,
        "persona_source": facts.persona_source.value,
        "variables": facts.variables,
        "started_at": iso(start),
        "answered_at": iso(answered),
        "ended_at": iso(ended_at),
        "duration_s": round(max(0.0, ended_at - answered), 1) if answered else 0.0,
        "outcome": closing.outcome.value,
        "reason": closing.reason,
        "answered_by": facts.answered_by or None,
        "transcript": transcript,
        "tool_calls": tool_calls,
        "latency": {
            "gemini_setup_ms": _rounded(segments[0].gemini_setup_ms) if segments else None,
            "first_audio_ms": _rounded(first_audio),
            "turn_ms": [round(ms, 1) for s in segments for ms in s.turn_ms],
        },
        "gemini_reconnects": sum(s.reconnects for s in segments),
        "interruptions": sum(s.interruptions for s in segments),
        "moves": moves,
        "streams": [
            {
                "stream": s.stream,
                "server": s.server,
                "started_at": iso(s.started_at),
                "ended_at": iso(s.ended_at),
                "outcome": s.outcome,
                **({"failure": s.failure} if s.failure else {}),
            }
            for s in segments
        ],
        "recording": None,
    }
    if facts.order:
        report["order"] = facts.order
    if facts.machine_action is not None:
        report["voicemail"] = facts.machine_action.value
    if facts.twilio_duration_s is not None:
        report["twilio_duration_s"] = facts.twilio_duration_s
    return with_recording(report, facts)


def with_recording(report: dict[str, Any], facts: CallFacts) -> dict[str, Any]:
    """The report with what is known of the call's recording (none asked for: null)."""
    if not facts.record and facts.recording_status is RecordingStatus.NONE:
        return report
    recording: dict[str, Any] = {
        "status": facts.recording_status.value or "pending",
        "sid": facts.recording_sid or None,
        "url": facts.recording_url or None,
        "duration_s": facts.recording_duration_s,
        "channels": 2,
    }
    if facts.recording_problem:
        recording["problem"] = facts.recording_problem
    return {**report, "recording": recording}
