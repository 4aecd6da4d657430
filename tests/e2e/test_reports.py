"""Every call gets one signed report; inbound calls take their persona from CALL_SETUP_URL.

A real server, the Gemini emulator, the simulated Twilio and a real HTTP receiver that
checks the signature (written apart from the bridge's signer) and fails on purpose.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from bridge.gemini.wire import FunctionCall
from bridge.testing.emulator import EmulatorOptions, FaultPlan, ScriptedToolCall
from bridge.testing.harness import loopback_deployment
from bridge.testing.redis_server import RedisServer
from bridge.testing.twilio_rest import TwilioRestFake
from bridge.testing.webhook_receiver import WebhookReceiver

from .test_calls import SHORT, run, until

pytestmark = pytest.mark.e2e

ACCOUNT = "AC" + "0" * 32
SECRET = "report-secret-" + "q7" * 8
OUR_NUMBER = "+14155550100"
PERSONAS = {
    OUR_NUMBER: {"name": "front-desk", "system_prompt": "You are the front desk."},
    "+14155550199": {
        "name": "vip",
        "system_prompt": "You look after {{name}}, whose plan is {{plan}}.",
        "greeting": "Greet {{name}} by name.",
        "variables": {"plan": "standard"},
    },
}


def personas_file(tmp_path: Path) -> str:
    path = tmp_path / "personas.json"
    path.write_text(json.dumps(PERSONAS))
    return str(path)


def env_for(rx: WebhookReceiver, tmp_path: Path, **more: str) -> dict[str, str]:
    return {
        "CALL_REPORT_URL": rx.url("/report"),
        "WEBHOOK_SECRET": SECRET,
        "PERSONAS_FILE": personas_file(tmp_path),
        "GREETING": "Greet the caller.",
        **more,
    }


async def one_report(rx: WebhookReceiver, timeout: float = 15) -> dict[str, Any]:
    (report,) = await rx.wait_for(1, timeout)
    assert report.signature_valid
    body: dict[str, Any] = report.json
    return body


async def no_second_report(rx: WebhookReceiver) -> None:
    await asyncio.sleep(1.5)
    assert len(rx.delivered) == 1


def test_an_inbound_call_takes_its_persona_and_variables_from_the_setup_webhook(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        async with WebhookReceiver(SECRET) as rx:
            rx.setup_answer = {"persona": "vip", "variables": {"name": "Ada Lovelace"}}
            env = env_for(rx, tmp_path, CALL_SETUP_URL=rx.url("/setup"))
            async with loopback_deployment(EmulatorOptions(reply_seconds=0.8), env=env) as d:
                caller = d.caller(to_number=OUR_NUMBER)
                async with caller.dial() as call:
                    await call.wait_for_answer(timeout=5)  # the greeting
                    await call.wait_until_quiet(quiet_s=0.3)
                    await call.say(SHORT)
                    await call.wait_for_answer(timeout=10)
                    await call.wait_until_quiet(quiet_s=0.3)
                (asked,) = rx.setup_requests
                assert asked.signature_valid
                assert asked.json == {
                    "call_sid": caller.call_sid,
                    "from": caller.from_number,
                    "to": OUR_NUMBER,
                }
                session = d.emulator.sessions[0]
                setup = json.dumps(session.setup)
                assert "You look after Ada Lovelace, whose plan is standard." in setup
                assert session.client_turns == ["Greet Ada Lovelace by name."]
                report = await one_report(rx)
                assert report["persona"] == "+14155550199"
                assert report["persona_source"] == "call_setup"
                assert report["variables"] == {"name": "Ada Lovelace"}
                assert (report["outcome"], report["reason"]) == ("completed", "caller_hung_up")
                assert report["direction"] == "inbound" and report["to"] == OUR_NUMBER
                speakers = [t["speaker"] for t in report["transcript"]]
                assert speakers[:3] == ["assistant", "caller", "assistant"]
                assert report["latency"]["first_audio_ms"] is not None
                assert len(report["latency"]["turn_ms"]) >= 1
                await no_second_report(rx)

    run(scenario())


@pytest.mark.parametrize("failure", ["slow", "down", "error", "unknown persona"])
def test_a_setup_webhook_that_fails_leaves_the_call_with_its_numbers_persona(
    tmp_path: Path, failure: str
) -> None:
    async def scenario() -> None:
        async with WebhookReceiver(SECRET) as rx:
            setup_url = rx.url("/setup")
            if failure == "slow":
                rx.setup_delay_s = 3.0
            elif failure == "down":
                setup_url = "http://127.0.0.1:9/setup"  # nothing listens there
            elif failure == "error":
                rx.setup_status = 503
            else:
                rx.setup_answer = {"persona": "nobody"}
            env = env_for(rx, tmp_path, CALL_SETUP_URL=setup_url, CALL_SETUP_TIMEOUT="1")
            async with loopback_deployment(EmulatorOptions(reply_seconds=0.5), env=env) as d:
                caller = d.caller(to_number=OUR_NUMBER)
                async with caller.dial() as call:
                    await call.wait_for_answer(timeout=5)  # greeted all the same
                assert "You are the front desk." in json.dumps(d.emulator.sessions[0].setup)
                report = await one_report(rx)
                assert report["persona"] == OUR_NUMBER
                assert report["persona_source"] == "call_setup_failed"

    run(scenario())


def end_call_script() -> list[ScriptedToolCall]:
    return [ScriptedToolCall(calls=[FunctionCall("end-1", "end_call", {})], on_caller_turn=1)]


@pytest.mark.parametrize("ending", ["end_call", "transfer", "gemini_down", "drain"])
def test_every_ending_gives_exactly_one_report(tmp_path: Path, ending: str) -> None:
    transfer = FunctionCall("t-1", "transfer_call", {"number": "+14155550111"})
    options = {
        "end_call": EmulatorOptions(reply_seconds=0.5, tool_script=end_call_script()),
        "transfer": EmulatorOptions(
            reply_seconds=0.5, tool_script=[ScriptedToolCall(calls=[transfer], on_caller_turn=1)]
        ),
        "gemini_down": EmulatorOptions(faults=FaultPlan(refuse_setup=True)),
        "drain": EmulatorOptions(reply_seconds=0.5),
    }[ending]
    expected = {
        "end_call": ("completed", "end_call"),
        "transfer": ("transferred", "transferred"),
        "gemini_down": ("failed", "gemini_failed"),
        "drain": ("completed", "drained"),
    }[ending]

    async def scenario() -> None:
        rest = TwilioRestFake(asyncio.get_running_loop())
        async with WebhookReceiver(SECRET) as rx:
            rx.fail_first = 2  # delivered all the same, on the third try
            env = env_for(
                rx, tmp_path, TWILIO_ACCOUNT_SID=ACCOUNT, TRANSFER_NUMBERS="+14155550111",
                DRAIN_TIMEOUT="0", GEMINI_PREWARM="false",
            )  # fmt: skip
            caller = None
            async with loopback_deployment(options, env=env, twilio_http_client=rest) as d:
                caller = d.caller(account_sid=ACCOUNT, to_number=OUR_NUMBER)
                rest.connect(caller)
                await caller.fetch_twiml()
                await caller.open_stream()
                if ending in ("end_call", "transfer"):
                    await caller.wait_for_answer(timeout=5)
                    await caller.wait_until_quiet(quiet_s=0.3)
                    await caller.say(SHORT)
                    await caller.wait_closed(timeout=15)
                elif ending == "gemini_down":
                    await caller.wait_closed(timeout=15)
                else:
                    await caller.wait_for_answer(timeout=5)
                    await caller.wait_until_quiet(quiet_s=0.3)
                    drained = asyncio.create_task(d.services.drain())
                    await caller.wait_closed(timeout=20)
                    await drained
                report = await one_report(rx, timeout=20)
                assert (report["outcome"], report["reason"]) == expected
                assert report["call_sid"] == caller.call_sid
                if ending in ("end_call", "transfer"):
                    (tool,) = report["tool_calls"]
                    assert tool["name"] == ("end_call" if ending == "end_call" else "transfer_call")
                    assert "result" in tool and tool["ms"] >= 0
                    if ending == "transfer":
                        assert tool["args"] == {"number": "+14155550111"}
                attempts = [x.headers.get("x-bridge-attempt") for x in rx.deliveries]
                assert attempts == ["1", "2", "3"]
                await no_second_report(rx)
            await caller.hang_up()
            await rest.aclose()

    run(scenario(), timeout=90)


def test_a_report_waits_in_the_store_and_a_restarted_server_delivers_it(tmp_path: Path) -> None:
    """With STATE_URL, a report the receiver would not take before the server stopped is
    delivered by the next server, from Redis."""

    async def scenario(redis_url: str) -> None:
        async with WebhookReceiver(SECRET) as rx:
            rx.fail_first = 1000
            env = env_for(rx, tmp_path, STATE_URL=redis_url, GEMINI_PREWARM="false")
            async with loopback_deployment(EmulatorOptions(reply_seconds=0.5), env=env) as d:
                caller = d.caller(to_number=OUR_NUMBER)
                async with caller.dial() as call:
                    await call.wait_for_answer(timeout=5)
                await until(lambda: len(rx.deliveries) >= 1, timeout=10)
            assert rx.delivered == []
            rx.fail_first = 0
            async with loopback_deployment(EmulatorOptions(), env=env) as again:
                report = await one_report(rx, timeout=30)
                assert report["call_sid"] == caller.call_sid
                assert again.services.fleet.instance != d.services.fleet.instance

    with RedisServer() as redis:
        run(scenario(redis.url), timeout=90)


def test_a_call_turned_away_is_reported_as_such(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with WebhookReceiver(SECRET) as rx:
            env = env_for(rx, tmp_path, MAX_CONCURRENT_CALLS="1")
            async with loopback_deployment(EmulatorOptions(reply_seconds=0.5), env=env) as d:
                first = d.caller(to_number=OUR_NUMBER)
                async with first.dial() as call:
                    await call.wait_for_answer(timeout=5)
                    second = d.caller(to_number=OUR_NUMBER)
                    with pytest.raises(ValueError, match="no <Connect><Stream>"):
                        await second.fetch_twiml()  # the busy answer
                    (report,) = await rx.wait_for(1, 10)
                    assert report.json["call_sid"] == second.call_sid
                    assert (report.json["outcome"], report.json["reason"]) == (
                        "turned_away",
                        "full",
                    )
                await rx.wait_for(2, 10)  # and the first, once it ends

    run(scenario())


def test_a_slow_receiver_never_holds_up_the_next_call(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with WebhookReceiver(SECRET) as rx:
            rx.delay_s = 6.0  # each report's answer takes 6 s
            env = env_for(rx, tmp_path)
            async with loopback_deployment(EmulatorOptions(reply_seconds=0.5), env=env) as d:
                first = d.caller(to_number=OUR_NUMBER)
                async with first.dial() as call:
                    await call.wait_for_answer(timeout=5)
                await asyncio.sleep(0.5)  # its report is on its way, and held by the receiver
                second = d.caller(to_number=OUR_NUMBER)
                async with second.dial() as call:
                    greeted = await call.wait_for_answer(timeout=5)
                assert greeted - second.result.stream_started_at < 2.0
                (first_report, _) = await rx.wait_for(2, timeout=20)
                # The second call was greeted while the first report's POST still waited.
                assert first_report.at < greeted < first_report.at + rx.delay_s
                await rx.wait_for(2, timeout=20)

    run(scenario())
