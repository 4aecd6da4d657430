"""Hostile and broken input: each bad stream is closed alone; secrets never leak."""

from __future__ import annotations

import asyncio
import io
import json
import logging

import pytest

from bridge.call.resources import CallGuards
from bridge.observability.logs import RedactingFormatter
from bridge.testing.emulator import EmulatorOptions
from bridge.testing.harness import Deployment, loopback_deployment
from bridge.twilio.media_streams import media_event

from .test_calls import SHORT, aget, run, until

pytestmark = pytest.mark.e2e

STREAM = "MZ" + "e" * 32


def media(payload: bytes = b"\xff" * 160) -> str:
    return media_event(stream_sid=STREAM, sequence_number=3, chunk=1, timestamp_ms=20, ulaw=payload)


BAD_AFTER_START: dict[str, list[str | bytes]] = {
    "not_json": ["{nope"],
    "wrong_types": ['{"event": "media", "streamSid": 5, "media": {"payload": ""}}'],
    "bad_base64": ['{"event": "media", "streamSid": "x", "media": {"payload": "!!!"}}'],
    "over_parser_cap": [
        json.dumps({"event": "media", "streamSid": "x", "media": {"payload": "A" * 70000}})
    ],
    "over_server_cap": ["x" * 200_000],
    "binary_frame": [b"\x00\x01\x02"],
    "flood": [media()] * 1500,
    "second_start": [],  # filled in by the test
}
EXPECTED_CODE = {"over_server_cap": 1009, "flood": 1008, "second_start": 1008}


async def hostile_call(
    d: Deployment, frames: list[str | bytes], *, before_start: bool = False
) -> int | None:
    caller = d.caller()
    await caller.fetch_twiml()
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    from bridge.twilio.media_streams import connected_event, start_event

    async with connect(caller.stream_url, max_size=None) as ws:
        await ws.send(connected_event())
        if not before_start:
            await ws.send(
                start_event(
                    stream_sid=caller.stream_sid,
                    call_sid=caller.call_sid,
                    account_sid=caller.account_sid,
                    custom_parameters=caller.parameters,
                )
            )
        try:
            for frame in frames or [
                start_event(
                    stream_sid=caller.stream_sid,
                    call_sid=caller.call_sid,
                    account_sid=caller.account_sid,
                    custom_parameters=caller.parameters,
                )
            ]:
                await ws.send(frame)
        except Exception:
            pass  # the bridge may close mid-flood
        try:
            async with asyncio.timeout(5):
                async for _ in ws:
                    pass
        except TimeoutError:
            return None
        except ConnectionClosed:
            pass
        return ws.close_code


def test_each_bad_stream_is_closed_with_a_reason_and_a_metric_while_a_good_call_goes_on() -> None:
    async def scenario() -> None:
        async with loopback_deployment(EmulatorOptions(reply_seconds=4.0, burst_factor=1.0)) as d:
            good = d.caller()
            async with good.dial() as call:
                await call.say(SHORT)
                await call.wait_for_answer(timeout=10)
                for name, frames in BAD_AFTER_START.items():
                    code = await hostile_call(d, frames)
                    assert code == EXPECTED_CODE.get(name, 1007), name
                assert await hostile_call(d, [media()], before_start=True) == 1007
                await call.wait_until_quiet(quiet_s=0.5, timeout=15)
            # The good call heard its whole answer, unbroken, while all that went on.
            assert good.result.frames_received == pytest.approx(200, abs=2)
            assert good.result.close_code == 1000
            await until(lambda: d.services.registry.active_count == 0)
            assert d.services.registry.snapshot()["totals"]["completed"] == 1
            text = d.services.metrics.render().decode()
            assert 'bridge_stream_rejections_total{reason="flood"} 1.0' in text
            # Every bad stream was counted, before (rejected) or after (failed) its start.
            assert 'bridge_stream_rejections_total{reason="protocol"} 8.0' in text
            assert 'bridge_calls_total{outcome="completed"} 1.0' in text

    run(scenario(), timeout=120)


def test_secrets_never_reach_logs_stats_metrics_or_the_caller() -> None:
    api_key = "AIzaSy-very-secret-key-123"
    auth_token = "twilio-auth-token-secret-456"
    operator = "operator-secret-789"
    log_stream = io.StringIO()
    handler = logging.StreamHandler(log_stream)
    root = logging.getLogger()

    async def scenario() -> None:
        options = EmulatorOptions(api_key=None, reply_seconds=0.5)
        env = {
            "GEMINI_API_KEY": api_key,
            "TWILIO_AUTH_TOKEN": auth_token,
            "OPERATOR_TOKEN": operator,
            "LOG_LEVEL": "DEBUG",
        }
        async with loopback_deployment(options, env=env) as d:
            handler.setFormatter(
                RedactingFormatter("%(levelname)s %(name)s %(message)s", d.settings.secrets())
            )
            root.addHandler(handler)
            old_level = root.level
            root.setLevel(logging.DEBUG)
            try:
                caller = d.caller()
                async with caller.dial() as call:
                    await call.say(SHORT)
                    await call.wait_for_answer(timeout=10)
                    await d.emulator.drop_all(
                        1008, f"API key {api_key} not valid"
                    )  # a failing call
                    await call.wait_closed(timeout=10)
                stream_token = caller.parameters["token"]
                _, stats = await aget(d, "/api/calls/stats", token=operator)
                _, metrics = await aget(d, "/metrics", token=operator)
            finally:
                root.removeHandler(handler)
                root.setLevel(old_level)
            logs = log_stream.getvalue()
            assert "Gemini closed with 1008" in logs  # the failure was logged...
            for secret in (api_key, auth_token, operator, stream_token):
                for where, text in (("logs", logs), ("stats", stats), ("metrics", metrics)):
                    assert secret not in text, f"secret in {where}"
            assert caller.result.close_reason and api_key not in caller.result.close_reason

    run(scenario())


def test_a_stream_that_falls_silent_is_closed_as_idle() -> None:
    async def scenario() -> None:
        async with loopback_deployment(guards=CallGuards(idle_timeout_s=1.0)) as d:
            assert await hostile_call(d, [media()]) == 1008  # one frame, then nothing
            text = d.services.metrics.render().decode()
            assert 'bridge_stream_rejections_total{reason="idle"} 1.0' in text

    run(scenario())
