"""Gemini Live ``BidiGenerateContent`` messages, without I/O.

The bridge builds client messages and parses server messages; the emulator
(``bridge.testing``) does the opposite with the same module, so both sides of
every test speak one definition of the wire. The wire is proto3 JSON:
camelCase is canonical, snake_case is accepted, base64 may be standard or
URL-safe, and one server message may combine several fields (3.x models send
audio, transcription and flags together), so nothing here is an ``elif``.
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

_SNAKE = re.compile(r"(?<!^)(?=[A-Z])")


@functools.cache
def _snake(camel: str) -> str:
    # Cached: every absent field of every message asks for its snake_case twin.
    return _SNAKE.sub("_", camel).lower()


@functools.lru_cache(maxsize=1024)
def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _get(obj: dict[str, Any], camel: str, default: Any = None) -> Any:
    """Read a field by its canonical camelCase name or its snake_case twin."""
    if camel in obj:
        return obj[camel]
    return obj.get(_snake(camel), default)


def _b64decode(text: Any) -> bytes:
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


def _b64encode(data: bytes) -> str:
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


def _text(data: str | bytes) -> str:
    """Gemini sends UTF-8 JSON in binary frames: decoding it here costs a quarter of what
    json.loads spends finding the encoding of bytes."""
    if isinstance(data, str):
        return data
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise GeminiProtocolError("not JSON (UnicodeDecodeError)") from None


def _load(text: str) -> dict[str, Any]:
    try:
        message = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise GeminiProtocolError(f"not JSON ({exc.__class__.__name__})") from None
    if not isinstance(message, dict):
        raise GeminiProtocolError("not a JSON object")
    return message


# --- client → server (the bridge's side) ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """Everything a ``setup`` carries; the same config is sent again on a resume."""

    model: str  # full resource name: models/… or projects/…/publishers/google/models/…
    voice: str
    system_prompt: str
    resumption_handle: str | None = None
    tools: tuple[dict[str, Any], ...] = ()
    realtime_input_config: dict[str, Any] | None = None


def setup_message(config: SessionConfig) -> str:
    """The first frame of a connection. Only fields every current Live model accepts.

    3.x models reject ``thinkingConfig``, ``enableAffectiveDialog`` and
    ``proactivity`` (or silently never answer), so they are not sent.
    """
    setup: dict[str, Any] = {
        "model": config.model,
        "generationConfig": {
            "responseModalities": ["AUDIO"],
            "speechConfig": {"voiceConfig": {"prebuiltVoiceConfig": {"voiceName": config.voice}}},
        },
        "systemInstruction": {"parts": [{"text": config.system_prompt}]},
        "inputAudioTranscription": {},
        "outputAudioTranscription": {},
        "sessionResumption": (
            {"handle": config.resumption_handle} if config.resumption_handle else {}
        ),
        "contextWindowCompression": {"slidingWindow": {}},
    }
    if config.tools:
        setup["tools"] = list(config.tools)
    if config.realtime_input_config:
        setup["realtimeInputConfig"] = config.realtime_input_config
    return json.dumps({"setup": setup})


def audio_input_message(pcm16k: bytes) -> str:
    # Hot path: 50 messages/s per call, so a format string rather than json.dumps.
    return (
        '{"realtimeInput":{"audio":{"mimeType":"audio/pcm;rate=16000","data":"'
        + _b64encode(pcm16k)
        + '"}}}'
    )


def audio_stream_end_message() -> str:
    return json.dumps({"realtimeInput": {"audioStreamEnd": True}})


def text_input_message(text: str) -> str:
    return json.dumps({"realtimeInput": {"text": text}})


def client_content_message(text: str, *, role: str = "user", turn_complete: bool = True) -> str:
    turn = {"role": role, "parts": [{"text": text}]}
    return json.dumps({"clientContent": {"turns": [turn], "turnComplete": turn_complete}})


@dataclass(frozen=True, slots=True)
class FunctionResponse:
    id: str
    name: str
    response: dict[str, Any]


def tool_response_message(responses: list[FunctionResponse]) -> str:
    return json.dumps(
        {
            "toolResponse": {
                "functionResponses": [
                    {"id": r.id, "name": r.name, "response": r.response} for r in responses
                ]
            }
        }
    )


# --- server → client (what the bridge parses) -------------------------------------------------


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


_KNOWN_SERVER_FIELDS = {
    "setupComplete",
    "serverContent",
    "toolCall",
    "toolCallCancellation",
    "goAway",
    "sessionResumptionUpdate",
    "usageMetadata",
    "voiceActivity",
    "voiceActivityDetectionSignal",
}


def _transcription(raw: Any) -> Transcription | None:
    if not isinstance(raw, dict):
        return None
    text = _get(raw, "text", "")
    return Transcription(
        text=text if isinstance(text, str) else "", finished=bool(_get(raw, "finished"))
    )


def _server_content(raw: dict[str, Any]) -> ServerContent:
    audio: list[bytes] = []
    text: list[str] = []
    turn = _get(raw, "modelTurn")
    if isinstance(turn, dict):
        parts = _get(turn, "parts", [])
        if not isinstance(parts, list):
            raise GeminiProtocolError("modelTurn.parts is not a list")
        for part in parts:
            if not isinstance(part, dict):
                continue
            inline = _get(part, "inlineData")
            if isinstance(inline, dict):
                mime = str(_get(inline, "mimeType", ""))
                if mime.startswith("audio/pcm"):
                    audio.append(_b64decode(_get(inline, "data", "")))
            part_text = _get(part, "text")
            if isinstance(part_text, str) and not _get(part, "thought"):
                text.append(part_text)
    reason = _get(raw, "turnCompleteReason")
    return ServerContent(
        audio=tuple(audio),
        text=tuple(text),
        input_transcription=_transcription(_get(raw, "inputTranscription")),
        output_transcription=_transcription(_get(raw, "outputTranscription")),
        interrupted=bool(_get(raw, "interrupted")),
        generation_complete=bool(_get(raw, "generationComplete")),
        turn_complete=bool(_get(raw, "turnComplete")),
        turn_complete_reason=reason if isinstance(reason, str) else None,
        waiting_for_input=bool(_get(raw, "waitingForInput")),
    )


def _int_field(raw: dict[str, Any], *names: str) -> int:
    for name in names:
        value = _get(raw, name)
        if value is not None:
            try:
                return int(value)  # int64 may arrive as a string
            except (TypeError, ValueError):
                return 0
    return 0


# JSON's own whitespace (``\s`` would also take spaces JSON does not allow).
_WS = r"[ \t\n\r]*"
# Gemini's audio message, most of what a call receives: up to the base64 and after it.
# Any spacing; "role": "model" before or after the parts.
_AUDIO_HEAD = re.compile(
    rf'{_WS}\{{{_WS}"serverContent"{_WS}:{_WS}\{{{_WS}"modelTurn"{_WS}:{_WS}\{{{_WS}'
    rf'(?:"role"{_WS}:{_WS}"model"{_WS},{_WS})?"parts"{_WS}:{_WS}\[{_WS}\{{{_WS}'
    rf'"inlineData"{_WS}:{_WS}\{{{_WS}"mimeType"{_WS}:{_WS}"audio/pcm[^"\\\x00-\x1f]*"{_WS},{_WS}'
    rf'"data"{_WS}:{_WS}"'
)
_AUDIO_TAIL = re.compile(
    rf'"{_WS}\}}{_WS}\}}{_WS}\]{_WS}(?:,{_WS}"role"{_WS}:{_WS}"model"{_WS})?'
    rf"\}}{_WS}\}}{_WS}\}}{_WS}"
)


def _audio_message(text: str) -> ServerMessage | None:
    """Read Gemini's usual audio message with two matches around its base64, not a JSON
    parse and a walk (half the time). Anything else, or anything odd, goes the general
    way."""
    head = _AUDIO_HEAD.match(text)
    if head is None:
        return None
    start = head.end()
    end = text.find('"', start)
    if end < 0 or _AUDIO_TAIL.fullmatch(text, end) is None:
        return None
    try:
        audio = pybase64.b64decode(text[start:end], validate=True)
    except (binascii.Error, ValueError):
        return None  # an escape, the URL-safe alphabet, or not base64 at all
    return ServerMessage(server_content=ServerContent(audio=(audio,)))


def parse_server_message(data: str | bytes) -> ServerMessage:
    """Parse one frame from Gemini (text or binary JSON)."""
    text = _text(data)
    if (audio := _audio_message(text)) is not None:
        return audio
    raw = _load(text)
    fields: dict[str, Any] = {}
    unknown = [k for k in raw if _camel(k) not in _KNOWN_SERVER_FIELDS]

    setup_complete = _get(raw, "setupComplete")
    if setup_complete is not None:
        session_id = setup_complete.get("sessionId") if isinstance(setup_complete, dict) else None
        fields["setup_complete"] = SetupComplete(
            session_id if isinstance(session_id, str) else None
        )

    content = _get(raw, "serverContent")
    if isinstance(content, dict):
        fields["server_content"] = _server_content(content)

    tool_call = _get(raw, "toolCall")
    if isinstance(tool_call, dict):
        calls = []
        for call in _get(tool_call, "functionCalls", []) or []:
            if not isinstance(call, dict) or not isinstance(call.get("name"), str):
                raise GeminiProtocolError("toolCall.functionCalls entry without a name")
            args = call.get("args") or {}
            calls.append(
                FunctionCall(
                    id=str(call.get("id", "")),
                    name=call["name"],
                    args=args if isinstance(args, dict) else {},
                )
            )
        fields["tool_calls"] = tuple(calls)

    cancellation = _get(raw, "toolCallCancellation")
    if isinstance(cancellation, dict):
        ids = cancellation.get("ids") or []
        fields["cancelled_tool_call_ids"] = tuple(str(i) for i in ids if isinstance(i, str | int))

    go_away = _get(raw, "goAway")
    if isinstance(go_away, dict):
        fields["go_away"] = GoAway(parse_duration(_get(go_away, "timeLeft", "0s")))

    update = _get(raw, "sessionResumptionUpdate")
    if isinstance(update, dict):
        handle = _get(update, "newHandle")
        fields["resumption_update"] = SessionResumptionUpdate(
            new_handle=handle if isinstance(handle, str) and handle else None,
            resumable=bool(_get(update, "resumable")),
        )

    usage = _get(raw, "usageMetadata")
    if isinstance(usage, dict):
        fields["usage"] = UsageMetadata(
            prompt_tokens=_int_field(usage, "promptTokenCount"),
            response_tokens=_int_field(usage, "responseTokenCount", "candidatesTokenCount"),
            total_tokens=_int_field(usage, "totalTokenCount"),
        )

    error = raw.get("error")
    if isinstance(error, dict):
        code = error.get("code")
        fields["error"] = ServerError(
            code=code if isinstance(code, int) and not isinstance(code, bool) else 0,
            message=str(error.get("message", ""))[:300],
            status=str(error.get("status", ""))[:40],
        )

    return ServerMessage(**fields, unknown_fields=tuple(unknown))


# --- the server's side (the emulator) ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClientMessage:
    """One client frame as the server sees it; exactly one field is set."""

    setup: dict[str, Any] | None = None
    audio: bytes | None = None
    audio_mime: str | None = None
    text: str | None = None
    audio_stream_end: bool = False
    activity_start: bool = False
    activity_end: bool = False
    client_turns: tuple[dict[str, Any], ...] = ()
    client_turn_complete: bool = False
    is_client_content: bool = False
    tool_responses: tuple[FunctionResponse, ...] = ()


def parse_client_message(data: str | bytes) -> ClientMessage:
    raw = _load(_text(data))
    # The emulator's hot path: one realtimeInput audio chunk in the canonical spelling.
    if len(raw) == 1 and type(body := raw.get("realtimeInput")) is dict and len(body) == 1:
        audio = body.get("audio")
        if type(audio) is dict and type(mime := audio.get("mimeType")) is str:
            return ClientMessage(audio=_b64decode(audio.get("data", "")), audio_mime=mime)
    keys = [_camel(k) for k in raw]
    if len(keys) != 1:
        raise GeminiProtocolError(
            f"expected exactly one of setup|clientContent|realtimeInput|toolResponse, got {keys}"
        )
    key = keys[0]
    body = next(iter(raw.values()))
    if not isinstance(body, dict):
        raise GeminiProtocolError(f"{key} is not an object")
    if key == "setup":
        return ClientMessage(setup=body)
    if key == "realtimeInput":
        audio = _get(body, "audio")
        chunks = _get(body, "mediaChunks")
        if audio is None and isinstance(chunks, list) and chunks:
            audio = chunks[0]  # deprecated form: only the first chunk counts
        if isinstance(audio, dict):
            return ClientMessage(
                audio=_b64decode(_get(audio, "data", "")),
                audio_mime=str(_get(audio, "mimeType", "")),
            )
        text = _get(body, "text")
        if isinstance(text, str):
            return ClientMessage(text=text)
        if _get(body, "audioStreamEnd"):
            return ClientMessage(audio_stream_end=True)
        if _get(body, "activityStart") is not None:
            return ClientMessage(activity_start=True)
        if _get(body, "activityEnd") is not None:
            return ClientMessage(activity_end=True)
        raise GeminiProtocolError("realtimeInput has none of audio|text|audioStreamEnd|activity*")
    if key == "clientContent":
        turns = _get(body, "turns", []) or []
        return ClientMessage(
            client_turns=tuple(t for t in turns if isinstance(t, dict)),
            client_turn_complete=bool(_get(body, "turnComplete")),
            is_client_content=True,
        )
    if key == "toolResponse":
        responses = []
        for r in _get(body, "functionResponses", []) or []:
            if isinstance(r, dict):
                responses.append(
                    FunctionResponse(
                        id=str(r.get("id", "")),
                        name=str(r.get("name", "")),
                        response=r.get("response") or {},
                    )
                )
        return ClientMessage(tool_responses=tuple(responses))
    raise GeminiProtocolError(f"unknown client message {key!r}")


_SETUP_SCHEMA: dict[str, Any] = {
    "model": None,
    "generationConfig": {
        "responseModalities": None,
        "speechConfig": {
            "voiceConfig": {"prebuiltVoiceConfig": {"voiceName": None}},
            "languageCode": None,
        },
        "temperature": None,
        "topP": None,
        "topK": None,
        "maxOutputTokens": None,
        "candidateCount": None,
        "presencePenalty": None,
        "frequencyPenalty": None,
        "seed": None,
        "mediaResolution": None,
        "thinkingConfig": None,
        "enableAffectiveDialog": None,
    },
    "systemInstruction": None,
    "tools": None,
    "realtimeInputConfig": {
        "automaticActivityDetection": {
            "disabled": None,
            "startOfSpeechSensitivity": None,
            "endOfSpeechSensitivity": None,
            "prefixPaddingMs": None,
            "silenceDurationMs": None,
        },
        "activityHandling": None,
        "turnCoverage": None,
    },
    "sessionResumption": {"handle": None, "transparent": None},
    "contextWindowCompression": {"triggerTokens": None, "slidingWindow": {"targetTokens": None}},
    "inputAudioTranscription": {"languageCodes": None},
    "outputAudioTranscription": {"languageCodes": None},
    "proactivity": {"proactiveAudio": None},
    "historyConfig": {"initialHistoryInClientContent": None},
}


def unknown_setup_fields(setup: dict[str, Any]) -> list[str]:
    """Dotted snake_case paths (as Google's 1007 reason names them) of fields Live does not know."""

    def walk(obj: dict[str, Any], schema: dict[str, Any], path: str) -> list[str]:
        found = []
        for key, value in obj.items():
            name = _camel(key)
            if name not in schema:
                found.append(f"{path}.{_snake(name)}" if path else _snake(name))
            elif isinstance(schema[name], dict) and isinstance(value, dict):
                found.extend(
                    walk(value, schema[name], f"{path}.{_snake(name)}" if path else _snake(name))
                )
        return found

    return walk(setup, _SETUP_SCHEMA, "setup")


def setup_field(setup: dict[str, Any], *path: str) -> Any:
    """Read a nested setup field by camelCase path, accepting snake_case on the wire."""
    obj: Any = setup
    for name in path:
        if not isinstance(obj, dict):
            return None
        obj = _get(obj, name)
    return obj


def setup_complete_message(session_id: str) -> str:
    return json.dumps({"setupComplete": {"sessionId": session_id}})


def server_content_message(
    *,
    audio: bytes | None = None,
    input_transcription: str | None = None,
    output_transcription: str | None = None,
    interrupted: bool = False,
    generation_complete: bool = False,
    turn_complete: bool = False,
    usage: UsageMetadata | None = None,
) -> str:
    if (
        audio is not None
        and not (input_transcription or output_transcription or interrupted or generation_complete)
        and not (turn_complete or usage)
    ):
        # The emulator's hot path (the benchmark's echo): a format string, as the bridge's.
        return (
            '{"serverContent":{"modelTurn":{"parts":[{"inlineData":{"mimeType":"'
            + OUTPUT_AUDIO_MIME
            + '","data":"'
            + _b64encode(audio)
            + '"}}],"role":"model"}}}'
        )
    content: dict[str, Any] = {}
    if audio is not None:
        content["modelTurn"] = {
            "parts": [{"inlineData": {"mimeType": OUTPUT_AUDIO_MIME, "data": _b64encode(audio)}}],
            "role": "model",  # as Gemini sends it (Content's field order: parts, role)
        }
    if input_transcription is not None:
        content["inputTranscription"] = {"text": input_transcription}
    if output_transcription is not None:
        content["outputTranscription"] = {"text": output_transcription}
    if interrupted:
        content["interrupted"] = True
    if generation_complete:
        content["generationComplete"] = True
    if turn_complete:
        content["turnComplete"] = True
    message: dict[str, Any] = {"serverContent": content}
    if usage is not None:
        message["usageMetadata"] = {
            "promptTokenCount": usage.prompt_tokens,
            "responseTokenCount": usage.response_tokens,
            "totalTokenCount": usage.total_tokens,
        }
    return json.dumps(message)


def tool_call_message(calls: list[FunctionCall]) -> str:
    return json.dumps(
        {
            "toolCall": {
                "functionCalls": [{"id": c.id, "name": c.name, "args": c.args} for c in calls]
            }
        }
    )


def tool_call_cancellation_message(ids: list[str]) -> str:
    return json.dumps({"toolCallCancellation": {"ids": ids}})


def go_away_message(time_left_s: float) -> str:
    return json.dumps({"goAway": {"timeLeft": f"{time_left_s:g}s"}})


def resumption_update_message(handle: str | None, resumable: bool) -> str:
    return json.dumps(
        {"sessionResumptionUpdate": {"newHandle": handle or "", "resumable": resumable}}
    )
