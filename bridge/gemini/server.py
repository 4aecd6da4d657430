"""The server's side of Gemini Live's wire, without I/O: reading what a client sends and
building what Gemini answers. The emulator speaks it; the bridge never does."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .wire import (
    OUTPUT_AUDIO_MIME,
    FunctionCall,
    FunctionResponse,
    GeminiProtocolError,
    UsageMetadata,
    b64decode,
    b64encode,
    camel,
    get_field,
    load_json,
    snake,
    to_text,
)


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
    raw = load_json(to_text(data))
    # The emulator's hot path: one realtimeInput audio chunk in the canonical spelling.
    if len(raw) == 1 and type(body := raw.get("realtimeInput")) is dict and len(body) == 1:
        audio = body.get("audio")
        if type(audio) is dict and type(mime := audio.get("mimeType")) is str:
            return ClientMessage(audio=b64decode(audio.get("data", "")), audio_mime=mime)
    keys = [camel(k) for k in raw]
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
        audio = get_field(body, "audio")
        chunks = get_field(body, "mediaChunks")
        if audio is None and isinstance(chunks, list) and chunks:
            audio = chunks[0]  # deprecated form: only the first chunk counts
        if isinstance(audio, dict):
            return ClientMessage(
                audio=b64decode(get_field(audio, "data", "")),
                audio_mime=str(get_field(audio, "mimeType", "")),
            )
        text = get_field(body, "text")
        if isinstance(text, str):
            return ClientMessage(text=text)
        if get_field(body, "audioStreamEnd"):
            return ClientMessage(audio_stream_end=True)
        if get_field(body, "activityStart") is not None:
            return ClientMessage(activity_start=True)
        if get_field(body, "activityEnd") is not None:
            return ClientMessage(activity_end=True)
        raise GeminiProtocolError("realtimeInput has none of audio|text|audioStreamEnd|activity*")
    if key == "clientContent":
        turns = get_field(body, "turns", []) or []
        return ClientMessage(
            client_turns=tuple(t for t in turns if isinstance(t, dict)),
            client_turn_complete=bool(get_field(body, "turnComplete")),
            is_client_content=True,
        )
    if key == "toolResponse":
        responses = []
        for r in get_field(body, "functionResponses", []) or []:
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
            name = camel(key)
            if name not in schema:
                found.append(f"{path}.{snake(name)}" if path else snake(name))
            elif isinstance(schema[name], dict) and isinstance(value, dict):
                found.extend(
                    walk(value, schema[name], f"{path}.{snake(name)}" if path else snake(name))
                )
        return found

    return walk(setup, _SETUP_SCHEMA, "setup")


def setup_field(setup: dict[str, Any], *path: str) -> Any:
    """Read a nested setup field by camelCase path, accepting snake_case on the wire."""
    obj: Any = setup
    for name in path:
        if not isinstance(obj, dict):
            return None
        obj = get_field(obj, name)
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
            + b64encode(audio)
            + '"}}],"role":"model"}}}'
        )
    content: dict[str, Any] = {}
    if audio is not None:
        content["modelTurn"] = {
            "parts": [{"inlineData": {"mimeType": OUTPUT_AUDIO_MIME, "data": b64encode(audio)}}],
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
