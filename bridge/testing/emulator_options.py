"""What the Gemini emulator is told (its options, scripted faults and tool calls) and what it
records of each connection, for tests to read."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from importlib import resources
from typing import Any

from ..gemini.server import ClientMessage
from ..gemini.wire import FunctionCall, FunctionResponse

BLOCK_MS = 20
INPUT_RATE = 16000
OUTPUT_RATE = 24000


# What `bridge emulator` expects by default; long enough for the bridge's secret policy.
DEFAULT_API_KEY = "offline-emulator-key"


def bundled_reply() -> bytes:
    """An assistant's spoken answer, 24 kHz PCM16 mono (~12 s)."""
    return resources.files("bridge.testing").joinpath("data/assistant_reply_24k.pcm").read_bytes()


class Moment(Enum):
    """Moments of a conversation a fault can be timed to (the first time each comes)."""

    CALLER_SPEAKING = "caller speaking"  # its VAD heard the caller start
    GENERATING = "generating"  # the first chunk of an answer went out
    ANSWER_PLAYING = "answer playing"  # the answer is all sent; the caller still hears it
    IDLE = "idle"  # the answer has played out at the caller (real time)
    TOOL_CALL_PENDING = "tool call pending"  # a tool call went out, no answer yet


@dataclass
class FaultPlan:
    """Faults for one connection; times are seconds after its ``setupComplete``."""

    go_away_at: float | None = None  # send goAway, then close 1011 when time_left runs out
    go_away_on: Moment | None = None  # ... or at this moment (plus go_away_at, if set)
    go_away_time_left: float = 10.0
    close_at: float | None = None  # close with close_code (1011: Google's internal error)
    close_code: int = 1011
    stall_at: float | None = None  # from then on hear the caller but never answer
    refuse_setup: bool = False  # close 1011 "service unavailable" instead of setupComplete
    setup_delay: float = 0.0  # wait this long before setupComplete
    setup_error: dict[str, Any] | None = None  # answer setup with this error frame, then hang


@dataclass
class ScriptedToolCall:
    """Make the emulated model call tools: on the caller's Nth turn, or on a text input."""

    calls: list[FunctionCall]
    on_caller_turn: int | None = None  # 1 = the caller's first turn
    on_text: str | None = None  # a realtimeInput.text / clientContent containing this
    cancel_after_s: float | None = None  # then cancel them all (toolCallCancellation)


@dataclass
class EmulatorOptions:
    api_key: str | None = DEFAULT_API_KEY  # expected x-goog-api-key; None accepts any
    bearer_token: str | None = None  # expected Authorization: Bearer (Vertex)
    reply_pcm: bytes | None = None  # 24 kHz PCM16; the bundled answer when None
    reply_seconds: float | None = None  # cut each answer to this length
    burst_factor: float = 4.0  # answer audio is sent this much faster than real time
    chunk_ms: int = 40
    response_delay_s: float = 0.1  # "thinking" time before the first answer chunk
    vad_threshold_rms: float = 300.0  # int16 RMS over 20 ms; phone speech is well above
    vad_start_ms: int = 60
    vad_end_silence_ms: int = 500
    answer_text: str = "Thanks for calling. Here is what I found about your order."
    faults: FaultPlan | None = None  # for every connection
    faults_by_connection: dict[int, FaultPlan] = field(default_factory=dict)  # by index, from 0
    reject_unknown_handles: bool = True
    tool_script: list[ScriptedToolCall] = field(default_factory=list)
    # The benchmark's Gemini: every audio chunk comes straight back as 24 kHz PCM, as
    # Gemini answers whatever it is sent (16 kHz PCM, or the bare relay's 8 kHz μ-law),
    # timed on arrival and departure; nothing else is kept.
    echo: bool = False


@dataclass
class EmulatedSession:
    """What one connection received and did; tests read these."""

    path: str
    auth: str  # "api_key" | "bearer"
    setup: dict[str, Any] = field(default_factory=dict)
    messages: list[ClientMessage] = field(default_factory=list)
    audio_in: bytearray = field(default_factory=bytearray)
    resumed_from: str | None = None  # the handle its setup carried
    quota_project: str | None = None  # x-goog-user-project, when sent
    client_turns: list[str] = field(default_factory=list)  # texts of clientContent turns
    texts: list[str] = field(default_factory=list)  # realtimeInput.text inputs
    tool_calls_sent: list[FunctionCall] = field(default_factory=list)
    tool_responses: list[FunctionResponse] = field(default_factory=list)
    unknown_tool_responses: list[FunctionResponse] = field(
        default_factory=list
    )  # ids it never sent
    continued_from: list[float] = field(default_factory=list)  # answers resumed part-way
    caller_turns: int = 0
    turns_known_at_start: int = 0  # the caller's turns the conversation knew when it began
    conversation: int = 0  # the conversation it carried (a resumed session: the same one)
    answers_started: int = 0
    answers_completed: int = 0
    answers: list[tuple[float, float, bool]] = field(default_factory=list)  # start, s, completed
    interruptions: int = 0
    close_code: int | None = None
    close_reason: str = ""
    keypad: str = ""  # digits seen in keypad texts (echo mode: the benchmark's call id)
    echo_in: list[tuple[float, int]] = field(default_factory=list)  # (arrived, bytes)
    echo_out: list[float] = field(default_factory=list)  # when each echo was sent
