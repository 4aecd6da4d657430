"""The bridge's side of Gemini Live's wire, without I/O: the messages it builds, and reading
the messages the server sends (with a fast path for the audio message, most of a call)."""

from __future__ import annotations

import binascii
import json
import re
from typing import Any

import pybase64

from .wire import (
    INPUT_AUDIO_MIME,
    FunctionCall,
    FunctionResponse,
    GeminiProtocolError,
    GoAway,
    ServerContent,
    ServerError,
    ServerMessage,
    SessionConfig,
    SessionResumptionUpdate,
    SetupComplete,
    Transcription,
    UsageMetadata,
    b64decode,
    b64encode,
    camel,
    get_field,
    load_json,
    parse_duration,
    to_text,
)

# --- client → server ---------------------------------------------------------------------


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


_AUDIO_INPUT_HEAD = '{"realtimeInput":{"audio":{"mimeType":"' + INPUT_AUDIO_MIME + '","data":"'


def audio_input_message(pcm16k: bytes) -> str:
    # Hot path: 50 messages/s per call, so a format string rather than json.dumps.
    return _AUDIO_INPUT_HEAD + b64encode(pcm16k) + '"}}}'


def text_input_message(text: str) -> str:
    return json.dumps({"realtimeInput": {"text": text}})


def client_content_message(text: str, *, role: str = "user", turn_complete: bool = True) -> str:
    turn = {"role": role, "parts": [{"text": text}]}
    return json.dumps({"clientContent": {"turns": [turn], "turnComplete": turn_complete}})


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


# --- server → client -------------------------------------------------------------------


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
    text = get_field(raw, "text", "")
    return Transcription(
        text=text if isinstance(text, str) else "", finished=bool(get_field(raw, "finished"))
    )


def _server_content(raw: dict[str, Any]) -> ServerContent:
    audio: list[bytes] = []
    text: list[str] = []
    turn = get_field(raw, "modelTurn")
    if isinstance(turn, dict):
        parts = get_field(turn, "parts", [])
        if not isinstance(parts, list):
            raise GeminiProtocolError("modelTurn.parts is not a list")
        for part in parts:
            if not isinstance(part, dict):
                continue
            inline = get_field(part, "inlineData")
            if isinstance(inline, dict):
                mime = str(get_field(inline, "mimeType", ""))
                if mime.startswith("audio/pcm"):
                    audio.append(b64decode(get_field(inline, "data", "")))
            part_text = get_field(part, "text")
            if isinstance(part_text, str) and not get_field(part, "thought"):
                text.append(part_text)
    reason = get_field(raw, "turnCompleteReason")
    return ServerContent(
        audio=tuple(audio),
        text=tuple(text),
        input_transcription=_transcription(get_field(raw, "inputTranscription")),
        output_transcription=_transcription(get_field(raw, "outputTranscription")),
        interrupted=bool(get_field(raw, "interrupted")),
        generation_complete=bool(get_field(raw, "generationComplete")),
        turn_complete=bool(get_field(raw, "turnComplete")),
        turn_complete_reason=reason if isinstance(reason, str) else None,
        waiting_for_input=bool(get_field(raw, "waitingForInput")),
    )


def _int_field(raw: dict[str, Any], *names: str) -> int:
    for name in names:
        value = get_field(raw, name)
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


def read_audio_message(text: str) -> ServerMessage | None:
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
    """Parse one frame from Gemini (text or binary JSON): its usual audio message the fast
    way, anything else the general way."""
    text = to_text(data)
    if (audio := read_audio_message(text)) is not None:
        return audio
    return parse_any_server_message(text)


def parse_any_server_message(data: str | bytes) -> ServerMessage:
    """Parse one frame from Gemini the general way: a JSON parse and a walk of its fields."""
    raw = load_json(to_text(data))
    fields: dict[str, Any] = {}
    unknown = [k for k in raw if camel(k) not in _KNOWN_SERVER_FIELDS]

    setup_complete = get_field(raw, "setupComplete")
    if setup_complete is not None:
        session_id = setup_complete.get("sessionId") if isinstance(setup_complete, dict) else None
        fields["setup_complete"] = SetupComplete(
            session_id if isinstance(session_id, str) else None
        )

    content = get_field(raw, "serverContent")
    if isinstance(content, dict):
        fields["server_content"] = _server_content(content)

    tool_call = get_field(raw, "toolCall")
    if isinstance(tool_call, dict):
        calls = []
        for call in get_field(tool_call, "functionCalls", []) or []:
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

    cancellation = get_field(raw, "toolCallCancellation")
    if isinstance(cancellation, dict):
        ids = cancellation.get("ids") or []
        fields["cancelled_tool_call_ids"] = tuple(str(i) for i in ids if isinstance(i, str | int))

    go_away = get_field(raw, "goAway")
    if isinstance(go_away, dict):
        fields["go_away"] = GoAway(parse_duration(get_field(go_away, "timeLeft", "0s")))

    update = get_field(raw, "sessionResumptionUpdate")
    if isinstance(update, dict):
        handle = get_field(update, "newHandle")
        fields["resumption_update"] = SessionResumptionUpdate(
            new_handle=handle if isinstance(handle, str) and handle else None,
            resumable=bool(get_field(update, "resumable")),
        )

    usage = get_field(raw, "usageMetadata")
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
