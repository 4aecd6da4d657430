"""Gemini Live's wire (``BidiGenerateContent``) as both sides share it, without I/O: the
message types and the proto3-JSON rules every reader follows.

The wire is proto3 JSON: camelCase is canonical, snake_case is accepted, base64 may be
standard or URL-safe, and one server message may combine several fields (3.x models send
audio, transcription and flags together), so nothing here is an ``elif``. The bridge's
side is ``client.py``, the emulator's ``server.py``, as websockets splits its roles.
"""

from __future__ import annotations

import binascii
import functools
import json
import re
from dataclasses import dataclass, field
from typing import Any

import pybase64

INPUT_AUDIO_MIME = "audio/pcm;rate=16000"
OUTPUT_AUDIO_MIME = "audio/pcm;rate=24000"


class GeminiProtocolError(ValueError):
    """A message that does not follow the protocol; the reason is safe to log."""


# --- helpers ----------------------------------------------------------------------------------

SNAKE_BOUNDARY = re.compile(r"(?<!^)(?=[A-Z])")


@functools.cache
def snake(name: str) -> str:
    """``realtimeInput`` → ``realtime_input``. Cached: every absent field of every message
    asks for its snake_case twin."""
    return SNAKE_BOUNDARY.sub("_", name).lower()


@functools.lru_cache(maxsize=1024)
def camel(name: str) -> str:
    """``realtime_input`` → ``realtimeInput``."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def get_field(obj: dict[str, Any], name: str, default: Any = None) -> Any:
    """Read a field by its canonical camelCase ``name`` or its snake_case twin."""
    if name in obj:
        return obj[name]
    return obj.get(snake(name), default)


def b64decode(text: Any) -> bytes:
    if not isinstance(text, str):
        raise GeminiProtocolError("inline data is not a base64 string")
    try:
        return pybase64.b64decode(text, validate=True)  # what Gemini sends
    except (binascii.Error, ValueError):
        pass  # proto3 JSON also allows the URL-safe alphabet and no padding
    text = text.replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        return pybase64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise GeminiProtocolError("inline data is not valid base64") from None


def b64encode(data: bytes) -> str:
    return pybase64.b64encode_as_string(data)


def parse_duration(text: Any) -> float:
    """proto3 JSON duration (``"50s"``, ``"0.5s"``) → seconds."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        return float(text)
    if isinstance(text, str) and text.endswith("s"):
        try:
            return float(text[:-1])
        except ValueError:
            pass
    raise GeminiProtocolError(f"not a duration: {str(text)[:20]!r}")


def to_text(data: str | bytes) -> str:
    """Gemini sends UTF-8 JSON in binary frames: decoding it here costs a quarter of what
    json.loads spends finding the encoding of bytes."""
    if isinstance(data, str):
        return data
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise GeminiProtocolError("not JSON (UnicodeDecodeError)") from None


def load_json(text: str) -> dict[str, Any]:
    try:
        message = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise GeminiProtocolError(f"not JSON ({exc.__class__.__name__})") from None
    if not isinstance(message, dict):
        raise GeminiProtocolError("not a JSON object")
    return message


# --- the messages --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """Everything a ``setup`` carries; the same config is sent again on a resume."""

    model: str  # full resource name: models/… or projects/…/publishers/google/models/…
    voice: str
    system_prompt: str
    resumption_handle: str | None = None
    tools: tuple[dict[str, Any], ...] = ()
    realtime_input_config: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class FunctionResponse:
    id: str
    name: str
    response: dict[str, Any]


@dataclass(frozen=True, slots=True)
class SetupComplete:
    session_id: str | None


@dataclass(frozen=True, slots=True)
class Transcription:
    text: str
    finished: bool = False


@dataclass(slots=True)  # not frozen: 50 a second per call; a frozen __init__ costs 3x
class ServerContent:
    audio: tuple[bytes, ...] = ()  # 24 kHz PCM16 LE chunks, in order
    text: tuple[str, ...] = ()  # text parts that are not thoughts
    input_transcription: Transcription | None = None
    output_transcription: Transcription | None = None
    interrupted: bool = False
    generation_complete: bool = False
    turn_complete: bool = False
    turn_complete_reason: str | None = None
    waiting_for_input: bool = False


@dataclass(frozen=True, slots=True)
class FunctionCall:
    id: str
    name: str
    args: dict[str, Any]


@dataclass(frozen=True, slots=True)
class GoAway:
    time_left_s: float


@dataclass(frozen=True, slots=True)
class SessionResumptionUpdate:
    new_handle: str | None
    resumable: bool


@dataclass(frozen=True, slots=True)
class UsageMetadata:
    prompt_tokens: int
    response_tokens: int
    total_tokens: int


@dataclass(frozen=True, slots=True)
class ServerError:
    """An ``error`` frame, Google's API error shape: code, message, status."""

    code: int
    message: str
    status: str

    # Statuses that say the request itself is wrong: no retry fixes them.
    CONFIGURATION_STATUSES = frozenset(
        {"INVALID_ARGUMENT", "NOT_FOUND", "PERMISSION_DENIED", "UNAUTHENTICATED",
         "FAILED_PRECONDITION"}
    )  # fmt: skip

    @property
    def is_configuration(self) -> bool:
        return self.status in self.CONFIGURATION_STATUSES or self.code in (400, 401, 403, 404)


@dataclass(slots=True)  # not frozen: 50 a second per call; a frozen __init__ costs 3x
class ServerMessage:
    """One server frame; any combination of these may be present at once."""

    setup_complete: SetupComplete | None = None
    server_content: ServerContent | None = None
    tool_calls: tuple[FunctionCall, ...] = ()
    cancelled_tool_call_ids: tuple[str, ...] = ()
    go_away: GoAway | None = None
    resumption_update: SessionResumptionUpdate | None = None
    usage: UsageMetadata | None = None
    error: ServerError | None = None
    unknown_fields: tuple[str, ...] = field(default=())

    @property
    def has_known_fields(self) -> bool:
        """False for a frame none of whose fields this protocol knows (the SDK raises on
        one: it is how errors that are not a close arrive)."""
        return bool(
            self.setup_complete or self.server_content or self.tool_calls
            or self.cancelled_tool_call_ids or self.go_away or self.resumption_update
            or self.usage
        )  # fmt: skip
