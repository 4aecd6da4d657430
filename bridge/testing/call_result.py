"""What a simulated caller observed on one call, and the figures drawn from it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

FRAME_S = 0.020


@dataclass
class Utterance:
    sent_from: float  # monotonic time of its first frame
    voiced_until: float  # monotonic time of its last voiced frame


@dataclass
class StreamSpan:
    """One Media Stream of the call: a call that moves has several."""

    stream_sid: str
    started_at: float  # ``start`` sent
    closed_at: float | None = None
    close_code: int | None = None
    close_reason: str = ""


@dataclass
class ActionRequest:
    """Twilio's ``<Connect action>`` request after a stream ended, and what it got."""

    at: float
    url: str
    status: int
    verbs: list[str] = field(default_factory=list)  # the TwiML's verbs, in order


@dataclass
class CallbackPost:
    """A signed callback Twilio POSTed (call status, AMD, recording status) and its answer."""

    at: float  # monotonic time it was sent
    url: str
    params: dict[str, str]
    status: int  # the HTTP status it got; 0 when no server answered


@dataclass
class CallResult:
    """Everything the caller observed; times are ``time.monotonic()`` seconds."""

    call_sid: str
    dialled_at: float
    stream_started_at: float = 0.0
    utterances: list[Utterance] = field(default_factory=list)
    media_received: list[float] = field(default_factory=list)  # arrival time of each 20 ms frame
    media_messages: int = 0  # media events, each carrying one or more frames
    heard: bytearray = field(default_factory=bytearray)  # the playback, 20 ms per tick
    said: bytearray = field(default_factory=bytearray)  # what the caller sent, 20 ms per tick
    heard_voiced_at: list[float] = field(default_factory=list)  # play time of voiced frames
    frames_sent: int = 0
    clears: list[float] = field(default_factory=list)
    marks_echoed: int = 0
    close_code: int | None = None
    close_reason: str = ""
    protocol_errors: list[str] = field(default_factory=list)  # what Twilio would reject
    unplayed_at_close: int | None = None  # bytes still in the playback buffer at close
    streams: list[StreamSpan] = field(default_factory=list)
    actions: list[ActionRequest] = field(default_factory=list)
    twilio_said: list[str] = field(default_factory=list)  # <Say> text Twilio spoke
    ended_by_twilio: str = ""  # "hangup", "application error", "end of TwiML"
    frames_unsent: int = 0  # caller frames spoken while no stream carried them
    twilio_said_at: list[float] = field(default_factory=list)  # when each twilio_said was spoken
    dialled: list[str] = field(default_factory=list)  # numbers a <Dial> connected the call to
    answered_at: float = 0.0  # Twilio ran the call's TwiML (the call was answered)
    ended_at: float | None = None  # the call ended, however it ended
    callbacks: list[CallbackPost] = field(default_factory=list)  # call-status callbacks posted

    def line_dead_s(self) -> list[float]:
        """For each move, from one stream closing to the next one starting: how long the
        caller's line carried nothing either way."""
        return [
            later.started_at - earlier.closed_at
            for earlier, later in zip(self.streams, self.streams[1:], strict=False)
            if earlier.closed_at is not None
        ]

    @property
    def frames_received(self) -> int:
        return len(self.media_received)

    def first_audio_s(self) -> float | None:
        """From dialling to the first answer audio reaching the caller."""
        return self.media_received[0] - self.dialled_at if self.media_received else None

    def turn_latencies_s(self) -> list[float]:
        """End of each caller utterance to the first answer frame that arrived after it."""
        latencies = []
        for utterance in self.utterances:
            after = [t for t in self.media_received if t > utterance.voiced_until]
            if after:
                latencies.append(after[0] - utterance.voiced_until)
        return latencies

    def report(self) -> dict[str, Any]:
        def ms(value: float | None) -> float | None:
            return None if value is None else round(value * 1000, 1)

        turns = self.turn_latencies_s()
        return {
            "call_sid": self.call_sid,
            "first_audio_ms": ms(self.first_audio_s()),
            "turn_latency_ms": [ms(t) for t in turns],
            "frames_sent": self.frames_sent,
            "frames_received": self.frames_received,
            "interruptions": len(self.clears),
            "heard_seconds": round(len(self.heard) / 8000, 2),
            "heard_voiced_seconds": round(len(self.heard_voiced_at) * FRAME_S, 2),
        }
