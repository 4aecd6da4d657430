"""What callers and operators expect: greeting, tools, hang-up, transfer, DTMF, transcripts, personas."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bridge.gemini.wire import FunctionCall
from bridge.testing.emulator import EmulatorOptions, FaultPlan, ScriptedToolCall
from bridge.testing.harness import loopback_deployment, serve_app
from bridge.testing.twilio_rest import TwilioRestFake

from ..fakes import json_log_lines
from .test_calls import SHORT, aget, run, until

pytestmark = pytest.mark.e2e

ACCOUNT = "AC" + "0" * 32
GREETING = {"GREETING": "Greet the caller."}


def test_the_assistant_speaks_first() -> None:
    async def scenario() -> None:
        async with loopback_deployment(EmulatorOptions(reply_seconds=1.0), env=GREETING) as d:
            caller = d.caller()
            async with caller.dial() as call:
                await call.wait_for_answer(timeout=5)  # the caller has said nothing
                await call.wait_until_quiet(quiet_s=0.3)
            session = d.emulator.sessions[0]
            assert session.client_turns == ["Greet the caller."]
            assert caller.result.frames_received == pytest.approx(50, abs=2)
            text = d.services.metrics.render().decode()
            assert "bridge_greeting_seconds_count 1.0" in text
            assert 'bridge_gemini_prewarm_total{result="used"} 1.0' in text

    run(scenario())


async def greeting_delay(prewarm: bool) -> float:
    """start → first greeting audio, with Gemini-like setup (300 ms) and first-audio (500 ms)
    times and Twilio taking 300 ms to open the stream after the TwiML."""
    options = EmulatorOptions(
        reply_seconds=0.5, response_delay_s=0.5, faults=FaultPlan(setup_delay=0.3)
    )
    env = {**GREETING, "GEMINI_PREWARM": "true" if prewarm else "false"}
    async with loopback_deployment(options, env=env) as d:
        caller = d.caller()
        await caller.fetch_twiml()
        await asyncio.sleep(0.3)
        async with caller.dial() as call:
            first = await call.wait_for_answer(timeout=5)
        return first - caller.result.stream_started_at


def test_pre_warming_cuts_the_wait_for_the_greeting() -> None:
    async def scenario() -> tuple[float, float]:
        return await greeting_delay(prewarm=False), await greeting_delay(prewarm=True)

    cold, warm = run(scenario())
    print(
        f"start → first greeting audio: {cold * 1000:.0f} ms cold, {warm * 1000:.0f} ms pre-warmed"
    )
    assert cold > 0.75  # setup + thinking, after the stream started
    assert warm < cold - 0.25  # the 300 ms of Twilio's connect overlapped both


def test_an_unclaimed_pre_warmed_session_is_closed() -> None:
    async def scenario() -> None:
        options = EmulatorOptions(reply_seconds=0.5)
        async with loopback_deployment(options, env={**GREETING, "GEMINI_PREWARM_TTL": "1"}) as d:
            await d.caller().fetch_twiml()  # a webhook, then no stream (it went elsewhere)
            await until(lambda: len(d.emulator.sessions) == 1)
            await until(lambda: d.emulator.sessions[0].close_code is not None, timeout=6)
            assert (
                'bridge_gemini_prewarm_total{result="expired"} 1.0'
                in d.services.metrics.render().decode()
            )

    run(scenario())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@asynccontextmanager
async def tool_server() -> AsyncIterator[tuple[str, list[dict[str, object]]]]:
    """An operator's HTTP API on loopback: a lookup, a slow endpoint and a broken one."""
    received: list[dict[str, object]] = []

    async def lookup(request: Request) -> JSONResponse:
        args = await request.json()
        received.append(args)
        return JSONResponse({"order": args.get("order_id"), "status": "shipped"})

    async def slow(request: Request) -> JSONResponse:
        received.append(await request.json())
        await asyncio.sleep(5)
        return JSONResponse({"late": True})

    async def broken(request: Request) -> JSONResponse:
        received.append(await request.json())
        return JSONResponse({"oops": True}, status_code=500)

    app = Starlette(
        routes=[Route(f"/{f.__name__}", f, methods=["POST"]) for f in (lookup, slow, broken)]
    )
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.setblocking(False)
    async with serve_app(app, sock):
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", received


def tools_file(tmp_path: Path, base: str) -> str:
    schema = {
        "type": "object",
        "properties": {"order_id": {"type": "string"}},
        "required": ["order_id"],
    }
    tools = [
        {
            "name": "lookup_order",
            "description": "Find an order.",
            "parameters": schema,
            "url": f"{base}/lookup",
        },
        {
            "name": "slow_lookup",
            "description": "Slow.",
            "parameters": schema,
            "url": f"{base}/slow",
            "timeout_s": 1,
        },
        {
            "name": "broken_lookup",
            "description": "Broken.",
            "parameters": schema,
            "url": f"{base}/broken",
        },
    ]
    path = tmp_path / "tools.json"
    path.write_text(json.dumps(tools))
    return str(path)


def test_http_tools_answer_with_output_or_error_payloads(tmp_path: Path) -> None:
    calls = [
        FunctionCall("call-1", "lookup_order", {"order_id": "A17"}),
        FunctionCall("call-2", "slow_lookup", {"order_id": "B2"}),
        FunctionCall("call-3", "broken_lookup", {"order_id": "C3"}),
        FunctionCall("call-4", "no_such_tool", {}),
    ]
    script = [ScriptedToolCall(calls=calls, on_caller_turn=1)]  # several calls in one message

    async def scenario() -> None:
        async with tool_server() as (base, received):
            options = EmulatorOptions(reply_seconds=0.5, tool_script=script)
            async with loopback_deployment(
                options, env={"TOOLS_FILE": tools_file(tmp_path, base)}
            ) as d:
                caller = d.caller()
                async with caller.dial() as call:
                    await call.say(SHORT)
                    await call.wait_for_answer(timeout=10)  # spoken once every call is answered
                session = d.emulator.sessions[0]
                declared = session.setup["tools"][0]["functionDeclarations"]
                assert [t["name"] for t in declared] == [
                    "lookup_order",
                    "slow_lookup",
                    "broken_lookup",
                ]
                assert declared[0]["parametersJsonSchema"]["required"] == ["order_id"]
                answers = {r.id: r for r in session.tool_responses}
                assert set(answers) == {"call-1", "call-2", "call-3", "call-4"}
                assert answers["call-1"].response == {
                    "output": {"order": "A17", "status": "shipped"}
                }
                assert answers["call-1"].name == "lookup_order"
                assert "within 1 s" in answers["call-2"].response["error"]["message"]
                assert "HTTP 500" in answers["call-3"].response["error"]["message"]
                assert "no tool named" in answers["call-4"].response["error"]["message"]
                assert {"order_id": "A17"} in received
                text = d.services.metrics.render().decode()
                assert 'bridge_tool_calls_total{result="ok",tool="lookup_order"} 1.0' in text

    run(scenario())


def test_cancelled_tool_calls_get_no_answer(tmp_path: Path) -> None:
    calls = [FunctionCall("slow-1", "slow_lookup", {"order_id": "X"})]
    script = [ScriptedToolCall(calls=calls, on_caller_turn=1, cancel_after_s=0.3)]

    async def scenario() -> None:
        async with tool_server() as (base, received):
            options = EmulatorOptions(reply_seconds=0.5, tool_script=script)
            env = {"TOOLS_FILE": tools_file(tmp_path, base), "TOOL_TIMEOUT": "3"}
            async with loopback_deployment(options, env=env) as d:
                caller = d.caller()
                async with caller.dial() as call:
                    await call.say(SHORT)
                    await until(lambda: bool(received), timeout=10)
                    await asyncio.sleep(1.5)  # past the 1 s tool timeout: it would have answered
                assert d.emulator.sessions[0].tool_responses == []
                assert d.emulator.sessions[0].unknown_tool_responses == []

    run(scenario())


def test_end_call_hangs_up_after_the_goodbye_has_played() -> None:
    script = [ScriptedToolCall(calls=[FunctionCall("end-1", "end_call", {})], on_caller_turn=1)]

    async def scenario() -> None:
        rest = TwilioRestFake(asyncio.get_running_loop())
        options = EmulatorOptions(reply_seconds=1.5, tool_script=script)
        env = {"TWILIO_ACCOUNT_SID": ACCOUNT}
        async with loopback_deployment(options, env=env, twilio_http_client=rest) as d:
            caller = d.caller(account_sid=ACCOUNT)
            rest.connect(caller)
            async with caller.dial() as call:
                await call.say(SHORT)
                goodbye_at = await call.wait_for_answer(timeout=10)
                await call.wait_closed(timeout=10)
            session = d.emulator.sessions[0]
            (answer,) = session.tool_responses
            assert answer.id == "end-1" and "goodbye" in json.dumps(answer.response)
            (request,) = rest.requests
            assert request.data == {"Status": "completed"}
            # Hung up only after the 1.5 s goodbye had played out at the caller.
            assert caller.result.frames_received == pytest.approx(75, abs=2)
            assert caller.result.unplayed_at_close == 0
            assert caller.result.heard_voiced_at[-1] > goodbye_at + 1.0

    run(scenario())


@pytest.mark.parametrize("number", ["+14155550111", "+19995550000"], ids=["allowed", "not-allowed"])
def test_transfer_goes_only_to_allowlisted_numbers(number: str) -> None:
    call = FunctionCall("transfer-1", "transfer_call", {"number": number})
    script = [ScriptedToolCall(calls=[call], on_caller_turn=1)]

    async def scenario() -> None:
        rest = TwilioRestFake(asyncio.get_running_loop())
        options = EmulatorOptions(reply_seconds=0.5, tool_script=script)
        env = {"TWILIO_ACCOUNT_SID": ACCOUNT, "TRANSFER_NUMBERS": "+14155550111, +14155550112"}
        async with loopback_deployment(options, env=env, twilio_http_client=rest) as d:
            caller = d.caller(account_sid=ACCOUNT)
            rest.connect(caller)
            async with caller.dial() as call:
                await call.say(SHORT)
                await call.wait_for_answer(timeout=10)
                if number.startswith("+1415"):
                    await call.wait_closed(timeout=10)  # Twilio ends the stream, not the bridge
                else:
                    await call.wait_until_quiet(quiet_s=1.0)
            session = d.emulator.sessions[0]
            declared = session.setup["tools"][0]["functionDeclarations"]
            assert {t["name"] for t in declared} == {"end_call", "transfer_call"}
            (answer,) = session.tool_responses
            if number.startswith("+1415"):
                (request,) = rest.requests
                assert (
                    request.data["Twiml"]
                    == f'<?xml version="1.0" encoding="UTF-8"?><Response><Dial>{number}</Dial></Response>'
                )
                assert "output" in answer.response
                assert caller.result.close_reason != "assistant ended the call"
            else:
                assert rest.requests == []
                assert "not one this line may transfer to" in answer.response["error"]["message"]

    run(scenario())


def test_keypad_digits_reach_the_model_as_text() -> None:
    async def scenario() -> None:
        async with loopback_deployment(EmulatorOptions(reply_seconds=0.5)) as d:
            caller = d.caller()
            async with caller.dial() as call:
                await call.press("4")
                await call.wait_for_answer(timeout=5)  # the emulator answers text input
            assert d.emulator.sessions[0].texts == ["(The caller pressed 4 on the phone keypad.)"]

    run(scenario())


@pytest.mark.parametrize("log_transcripts", [False, True], ids=["default", "LOG_TRANSCRIPTS"])
def test_transcripts_in_stats_and_one_log_record_per_call_only_when_asked(
    log_transcripts: bool,
) -> None:
    env = {"LOG_TRANSCRIPTS": "true"} if log_transcripts else {}

    async def scenario() -> list[dict]:
        async with loopback_deployment(EmulatorOptions(reply_seconds=1.0), env=env) as d:
            caller = d.caller()
            with json_log_lines() as lines:
                async with caller.dial() as call:
                    await call.say(SHORT)
                    await call.wait_for_answer(timeout=10)
                    await call.wait_until_quiet(quiet_s=0.3)
                    _, body = await aget(d, "/api/calls/stats")
                    (live,) = json.loads(body)["active_calls"]
                    assert [t["speaker"] for t in live["transcript_tail"]] == [
                        "caller",
                        "assistant",
                    ]
                    assert live["transcript_tail"][1]["text"].startswith("Thanks for calling")
                await until(lambda: d.services.registry.active_count == 0)
            return [{**line, "expected_sid": caller.call_sid} for line in lines]

    lines = run(scenario())
    logged = [line for line in lines if line.get("event") == "transcript"]
    if not log_transcripts:  # caller speech stays off the log unless asked for
        assert logged == [] and "Thanks for calling" not in json.dumps(lines)
        return
    (record,) = logged
    # The transcript is in the record once (its data), not again in its message.
    assert json.dumps(record).count("Thanks for calling") == 1
    assert record["call_sid"] == record["expected_sid"] and len(record["data"]["turns"]) == 2


def test_personas_by_called_number_and_vad_settings(tmp_path: Path) -> None:
    personas = tmp_path / "personas.json"
    personas.write_text(
        json.dumps(
            {
                "+14155550100": {
                    "system_prompt": "You are ACME's order line.",
                    "voice": "Puck",
                    "greeting": "Say ACME.",
                }
            }
        )
    )

    async def scenario() -> None:
        env = {**GREETING, "PERSONAS_FILE": str(personas), "VAD_SILENCE_DURATION_MS": "800"}
        async with loopback_deployment(EmulatorOptions(reply_seconds=0.3), env=env) as d:
            for to in ("+14155550100", "+14155550999"):
                caller = d.caller(to_number=to)
                async with caller.dial() as call:
                    await call.wait_for_answer(timeout=5)
            acme, other = d.emulator.sessions
            assert (
                acme.setup["systemInstruction"]["parts"][0]["text"] == "You are ACME's order line."
            )
            assert (
                acme.setup["generationConfig"]["speechConfig"]["voiceConfig"][
                    "prebuiltVoiceConfig"
                ]["voiceName"]
                == "Puck"
            )
            assert acme.client_turns == ["Say ACME."]
            assert other.client_turns == ["Greet the caller."]
            assert (
                other.setup["generationConfig"]["speechConfig"]["voiceConfig"][
                    "prebuiltVoiceConfig"
                ]["voiceName"]
                == "Kore"
            )
            vad = other.setup["realtimeInputConfig"]["automaticActivityDetection"]
            assert vad == {
                "startOfSpeechSensitivity": "START_SENSITIVITY_LOW",
                "endOfSpeechSensitivity": "END_SENSITIVITY_LOW",
                "prefixPaddingMs": 40,
                "silenceDurationMs": 800,
            }

    run(scenario())
