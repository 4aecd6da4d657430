"""The Gemini Live protocol, both roles, without sockets."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given, settings

from bridge.gemini.client import (
    audio_input_message,
    client_content_message,
    parse_server_message,
    setup_message,
    text_input_message,
    tool_response_message,
)
from bridge.gemini.server import (
    go_away_message,
    parse_client_message,
    resumption_update_message,
    server_content_message,
    setup_complete_message,
    tool_call_cancellation_message,
    tool_call_message,
    unknown_setup_fields,
)
from bridge.gemini.wire import (
    FunctionCall,
    FunctionResponse,
    GeminiProtocolError,
    SessionConfig,
    UsageMetadata,
    parse_duration,
)
from tests.fakes import one_character_off

CONFIG = SessionConfig(model="models/gemini-3.8-live", voice="Kore", system_prompt="Be brief.")


def test_setup_asks_for_audio_voice_prompt_transcripts_resumption_and_compression() -> None:
    setup = json.loads(setup_message(CONFIG))["setup"]
    assert setup["model"] == "models/gemini-3.8-live"
    assert setup["generationConfig"]["responseModalities"] == ["AUDIO"]
    assert (
        setup["generationConfig"]["speechConfig"]["voiceConfig"]["prebuiltVoiceConfig"]["voiceName"]
        == "Kore"
    )
    assert setup["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert setup["inputAudioTranscription"] == {} and setup["outputAudioTranscription"] == {}
    assert setup["sessionResumption"] == {}
    assert setup["contextWindowCompression"] == {"slidingWindow": {}}
    assert unknown_setup_fields(setup) == []


def test_setup_sends_nothing_3x_models_reject() -> None:
    text = setup_message(CONFIG)
    for field in (
        "thinkingConfig",
        "enableAffectiveDialog",
        "proactivity",
        "transparent",
        "languageCode",
    ):
        assert field not in text


def test_resumed_setup_carries_the_handle() -> None:
    config = SessionConfig(model="m", voice="Puck", system_prompt="x", resumption_handle="h-1")
    assert json.loads(setup_message(config))["setup"]["sessionResumption"] == {"handle": "h-1"}


def test_client_messages_round_trip() -> None:
    pcm = bytes(range(256)) * 2
    audio = parse_client_message(audio_input_message(pcm))
    assert audio.audio == pcm and audio.audio_mime == "audio/pcm;rate=16000"
    assert parse_client_message(text_input_message("hi")).text == "hi"
    assert parse_client_message('{"realtimeInput": {"audioStreamEnd": true}}').audio_stream_end
    content = parse_client_message(client_content_message("Greet the caller."))
    assert content.is_client_content and content.client_turn_complete
    assert content.client_turns[0]["parts"][0]["text"] == "Greet the caller."
    response = parse_client_message(
        tool_response_message([FunctionResponse("id1", "f", {"output": 1})])
    )
    assert response.tool_responses == (FunctionResponse("id1", "f", {"output": 1}),)


def test_server_accepts_snake_case_and_urlsafe_base64_like_google() -> None:
    pcm = b"\xff\xfe\xfb" * 10
    raw = json.dumps(
        {
            "realtime_input": {
                "audio": {
                    "mime_type": "audio/pcm;rate=16000",
                    "data": base64.urlsafe_b64encode(pcm).decode().rstrip("="),
                }
            }
        }
    )
    assert parse_client_message(raw).audio == pcm


def test_unknown_setup_fields_are_named_like_googles_1007() -> None:
    setup = json.loads(setup_message(CONFIG))["setup"]
    setup["generationConfig"]["bogus"] = 1
    setup["sessionResumption"]["transparent"] = True  # known (Vertex), so not reported
    setup["extra"] = {}
    assert unknown_setup_fields(setup) == ["setup.generation_config.bogus", "setup.extra"]


def test_one_server_message_may_combine_audio_transcription_and_flags() -> None:
    pcm = b"\x01\x02" * 100
    raw = json.dumps(
        {
            "serverContent": {
                "modelTurn": {
                    "parts": [
                        {
                            "inlineData": {
                                "mimeType": "audio/pcm;rate=24000",
                                "data": base64.b64encode(pcm).decode(),
                            }
                        },
                        {"text": "thinking...", "thought": True},
                        {"text": "Hello"},
                        {
                            "inlineData": {
                                "mimeType": "audio/pcm;rate=24000",
                                "data": base64.b64encode(pcm[:4]).decode(),
                            }
                        },
                    ]
                },
                "outputTranscription": {"text": "Hel"},
                "inputTranscription": {"text": "hi", "finished": True},
                "generationComplete": True,
                "turnComplete": True,
                "turnCompleteReason": "RESPONSE_REJECTED",
                "interrupted": True,
            },
            "usageMetadata": {
                "promptTokenCount": "12",
                "candidatesTokenCount": 3,
                "totalTokenCount": 15,
            },
            "sessionResumptionUpdate": {"newHandle": "h2", "resumable": True},
        }
    )
    message = parse_server_message(raw)
    content = message.server_content
    assert content is not None
    assert content.audio == (pcm, pcm[:4])
    assert content.text == ("Hello",)
    assert content.output_transcription is not None and content.output_transcription.text == "Hel"
    assert content.input_transcription is not None and content.input_transcription.finished
    assert content.generation_complete and content.turn_complete and content.interrupted
    assert content.turn_complete_reason == "RESPONSE_REJECTED"
    assert message.usage == UsageMetadata(12, 3, 15)
    assert message.resumption_update is not None and message.resumption_update.new_handle == "h2"


def test_every_server_message_type() -> None:
    assert parse_server_message(setup_complete_message("s1")).setup_complete.session_id == "s1"  # type: ignore[union-attr]
    assert parse_server_message(b'{"setupComplete": {}}').setup_complete is not None
    calls = [FunctionCall("c1", "end_call", {}), FunctionCall("c2", "lookup", {"id": "A1"})]
    assert parse_server_message(tool_call_message(calls)).tool_calls == tuple(calls)
    assert parse_server_message(tool_call_cancellation_message(["c1"])).cancelled_tool_call_ids == (
        "c1",
    )
    assert parse_server_message(go_away_message(50)).go_away.time_left_s == 50  # type: ignore[union-attr]
    update = parse_server_message(
        resumption_update_message(None, resumable=False)
    ).resumption_update
    assert update is not None and update.new_handle is None and not update.resumable
    interrupted = parse_server_message(server_content_message(interrupted=True)).server_content
    assert interrupted is not None and interrupted.interrupted and not interrupted.audio
    assert (
        parse_server_message('{"voiceActivity": {"type": "ACTIVITY_START"}}').unknown_fields == ()
    )
    assert parse_server_message('{"brandNew": {}}').unknown_fields == ("brandNew",)


@pytest.mark.parametrize(("text", "seconds"), [("50s", 50.0), ("0.5s", 0.5), (12, 12.0)])
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "raw",
    [
        "nope",
        "[]",
        '{"serverContent": {"modelTurn": {"parts": [{"inlineData": {"mimeType": "audio/pcm", "data": "@@@"}}]}}}',
        '{"serverContent": {"modelTurn": {"parts": "x"}}}',
        '{"goAway": {"timeLeft": "soon"}}',
        '{"toolCall": {"functionCalls": [{"id": "1"}]}}',
    ],
)
def test_bad_server_messages_raise(raw: str) -> None:
    with pytest.raises(GeminiProtocolError):
        parse_server_message(raw)


@pytest.mark.parametrize(
    "raw",
    [
        '{"setup": {}, "realtimeInput": {}}',
        '{"realtimeInput": {}}',
        '{"bogus": {}}',
        '{"setup": 1}',
    ],
)
def test_bad_client_messages_raise(raw: str) -> None:
    with pytest.raises(GeminiProtocolError):
        parse_client_message(raw)


def _both_ways(message: str | bytes) -> list[object]:
    """What parse_server_message (audio the fast way) and the general parser make of it."""
    from bridge.gemini import client

    outcomes: list[object] = []
    for parse in (client.parse_server_message, client.parse_any_server_message):
        try:
            outcomes.append(parse(message))
        except GeminiProtocolError as exc:
            outcomes.append(str(exc))
    return outcomes


GEMINI_AUDIO = server_content_message(audio=bytes(range(48)))


def test_the_audio_fast_path_reads_what_the_general_parser_reads() -> None:
    from bridge.gemini import client

    chunk = bytes(range(256)) * 3
    b64 = base64.b64encode(chunk).decode()
    spaced = (
        '{\n  "serverContent": {\n    "modelTurn": {\n      "role": "model",\n      "parts": [\n'
        '        {\n          "inlineData": {\n            "mimeType": "audio/pcm;rate=24000",\n'
        f'            "data": "{b64}"\n          }}\n        }}\n      ]\n    }}\n  }}\n}}\n'
    )
    usual = [server_content_message(audio=chunk), spaced, spaced.encode()]
    for message in usual:  # what Gemini sends most is read the fast way
        text = message.decode() if isinstance(message, bytes) else message
        assert client.read_audio_message(text) is not None
    cases = [
        *usual,
        GEMINI_AUDIO.replace('"role":"model"', '"role":"user"'),  # not a shape Gemini sends
        GEMINI_AUDIO.replace("audio/pcm;rate=24000", "audio/pcm"),
        GEMINI_AUDIO.replace("audio/pcm;rate=24000", "image/png"),
        GEMINI_AUDIO.replace('"data":"', '"data":"AA-_'),  # URL-safe: the general way reads it
        GEMINI_AUDIO.replace('"data":"', '"data":"\\u0041'),
        GEMINI_AUDIO.replace('"data":"', '"data":"\n'),  # a raw control character
        GEMINI_AUDIO + "x",
        "\ufeff" + GEMINI_AUDIO,
        GEMINI_AUDIO.encode("utf-16"),
        b"\xff" + GEMINI_AUDIO.encode(),
        '{"server_content":{"model_turn":{"parts":[{"inline_data":{"mime_type":"audio/pcm;rate=24000","data":"AAEC"}}]}}}',
        '{"serverContent":{"modelTurn":{"parts":[{"inlineData":{"mimeType":"audio/pcm","data":"AA-_"}},'
        '{"inlineData":{"mimeType":"audio/pcm","data":"AAE"}}]}}}',
        '{"serverContent":{"modelTurn":{"parts":[{"text":"hi"}]},"turnComplete":true}}',
        '{"serverContent":{"modelTurn":{"parts":[],"role":"model","extra":1}}}',
    ]
    for case in cases:
        fast, general = _both_ways(case)
        assert fast == general, case
    assert client.parse_server_message(usual[0]).server_content.audio == (chunk,)  # type: ignore[union-attr]


@settings(max_examples=300, deadline=None)
@given(one_character_off(GEMINI_AUDIO, '"{}[]:, \n\\aA/+=-_'))
def test_an_audio_message_off_by_one_character_reads_the_same_either_way(message: str) -> None:
    fast, general = _both_ways(message)
    assert fast == general


def test_the_emulators_fast_paths_match_the_general_ones() -> None:
    from bridge.gemini import client, server

    pcm = bytes(range(256)) * 3
    built = server.server_content_message(audio=pcm)
    assert json.loads(built) == {
        "serverContent": {
            "modelTurn": {
                "parts": [
                    {
                        "inlineData": {
                            "mimeType": "audio/pcm;rate=24000",
                            "data": base64.b64encode(pcm).decode(),
                        }
                    }
                ],
                "role": "model",
            }
        }
    }
    with_flag = json.loads(server.server_content_message(audio=pcm, turn_complete=True))
    assert with_flag["serverContent"]["turnComplete"] is True  # not the fast path's shape
    audio = server.parse_client_message(client.audio_input_message(pcm))
    assert audio.audio == pcm and audio.audio_mime == "audio/pcm;rate=16000"
    with pytest.raises(GeminiProtocolError):
        server.parse_client_message('{"realtimeInput":{"audio":{"mimeType":"x","data":"%"}}}')
