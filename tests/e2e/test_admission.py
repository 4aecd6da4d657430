"""Admission and graceful shutdown: busy when full, draining on SIGTERM, goodbyes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
import urllib.request

import pytest

from bridge.testing.caller import SimulatedCaller
from bridge.testing.emulator import EmulatorOptions, FaultPlan, GeminiEmulator
from bridge.testing.harness import loopback_deployment
from bridge.testing.served import serve_command
from bridge.testing.twilio_rest import TwilioRestFake

from .test_calls import SHORT, aget, run, until

pytestmark = pytest.mark.e2e

ACCOUNT = "AC" + "0" * 32


def test_over_capacity_calls_get_busy_and_ready_says_503() -> None:
    async def scenario() -> None:
        async with loopback_deployment(
            EmulatorOptions(reply_seconds=0.5), env={"MAX_CONCURRENT_CALLS": "1"}
        ) as d:
            assert (await aget(d, "/ready"))[0] == 200
            first = d.caller()
            async with first.dial():
                await until(lambda: d.services.registry.active_count == 1)
                status, body = await aget(d, "/ready")
                assert status == 503 and json.loads(body) == {"status": "full"}
                second = d.caller()
                status, body = await asyncio.to_thread(second._post_webhook, _signature(d, second))
                assert status == 200 and body.endswith(
                    '<Response><Reject reason="busy" /></Response>'
                )
            await until(lambda: d.services.registry.active_count == 0)
            assert (await aget(d, "/ready"))[0] == 200
            assert (
                'bridge_webhook_requests_total{result="busy_full"} 1.0'
                in d.services.metrics.render().decode()
            )

    run(scenario())


def test_ready_says_gemini_is_failing_after_every_recent_call_failed_and_recovers_by_itself() -> (
    None
):
    async def scenario() -> None:
        options = EmulatorOptions(faults=FaultPlan(refuse_setup=True))  # Gemini is down
        async with loopback_deployment(options) as d:
            d.services.gemini_watch.reprobe_interval_s = 0.3
            assert (await aget(d, "/ready"))[0] == 200
            for _ in range(3):
                assert (await aget(d, "/ready"))[0] == 200  # one or two failures: not yet
                caller = d.caller()
                async with caller.dial() as call:
                    await call.wait_closed(timeout=5)
                assert caller.result.close_code == 1011  # the apology
            await until(lambda: d.services.registry.active_count == 0)
            status, body = await aget(d, "/ready")
            assert status == 503
            ready = json.loads(body)
            assert ready["status"] == "gemini_failing"
            assert ready["detail"] == "the last 3 Gemini session setups failed"
            assert "The service is currently unavailable" in ready["last_error"]
            # An unready pod gets no calls: its own probes find out when Gemini is back.
            sessions = len(d.emulator.sessions)
            await asyncio.sleep(0.8)
            assert (await aget(d, "/ready"))[0] == 503
            assert len(d.emulator.sessions) > sessions
            options.faults = None  # Gemini recovers
            await until(lambda: not d.services.gemini_watch.health.failing, timeout=3)
            assert await aget(d, "/ready") == (200, '{"status":"ready"}')
            caller = d.caller()
            async with caller.dial() as call:
                await call.say(SHORT)
                await call.wait_for_answer(timeout=10)

    run(scenario())


def _signature(d: object, caller: SimulatedCaller) -> str:
    from twilio.request_validator import RequestValidator

    return RequestValidator(caller.auth_token).compute_signature(
        caller.public_url + caller.webhook_path, caller.webhook_params()
    )


def test_an_answered_webhook_holds_its_place_until_the_stream_starts() -> None:
    async def scenario() -> None:
        async with loopback_deployment(env={"MAX_CONCURRENT_CALLS": "1"}) as d:
            first = d.caller()
            await first.fetch_twiml()  # answered, stream not started yet
            assert (await aget(d, "/ready"))[0] == 503
            late = d.caller()
            _, body = await asyncio.to_thread(late._post_webhook, _signature(d, late))
            assert "Reject" in body
            async with first.dial():  # the reserved call gets in
                await until(lambda: d.services.registry.active_count == 1)

    run(scenario())


def test_a_replayed_webhook_is_refused() -> None:
    async def scenario() -> None:
        async with loopback_deployment() as d:
            caller = d.caller()
            await caller.fetch_twiml()
            status, body = await asyncio.to_thread(caller._post_webhook, _signature(d, caller))
            assert status == 409 and "<Response>" not in body

    run(scenario())


def test_draining_refuses_new_calls_and_lets_running_ones_finish() -> None:
    async def scenario() -> None:
        async with loopback_deployment(
            EmulatorOptions(reply_seconds=1.0), env={"DRAIN_TIMEOUT": "30"}
        ) as d:
            caller = d.caller()
            async with caller.dial() as call:
                await until(lambda: d.services.registry.active_count == 1)
                d.server.start_drain()
                await until(lambda: d.services.registry.draining)
                status, body = await aget(d, "/ready")
                assert status == 503 and json.loads(body) == {"status": "draining"}
                newcomer = d.caller()
                _, twiml = await asyncio.to_thread(newcomer._post_webhook, _signature(d, newcomer))
                assert "Reject" in twiml
                # The running call goes on as if nothing happened.
                await call.say(SHORT)
                await call.wait_for_answer(timeout=10)
                await call.wait_until_quiet(quiet_s=0.3)
            assert caller.result.close_code == 1000
            assert caller.result.frames_received == pytest.approx(50, abs=2)
            drained = d.server.drained
            assert drained is not None
            await asyncio.wait_for(asyncio.shield(drained), 5)
            assert d.emulator.sessions[0].client_turns == []  # no goodbye was needed

    run(scenario())


@pytest.mark.parametrize("with_rest", [True, False], ids=["rest-hangup", "stream-close"])
def test_calls_left_at_drain_timeout_hear_a_goodbye_then_hang_up(with_rest: bool) -> None:
    async def scenario() -> None:
        rest = TwilioRestFake(asyncio.get_running_loop())
        env = {"DRAIN_TIMEOUT": "0.5"}
        if with_rest:
            env["TWILIO_ACCOUNT_SID"] = ACCOUNT
        async with loopback_deployment(
            EmulatorOptions(reply_seconds=1.5), env=env, twilio_http_client=rest
        ) as d:
            caller = d.caller(account_sid=ACCOUNT)
            rest.connect(caller)
            async with caller.dial() as call:
                await until(lambda: d.services.registry.active_count == 1)
                drain_started = time.monotonic()
                d.server.start_drain()
                await call.wait_closed(timeout=15)
            session = d.emulator.sessions[0]
            assert len(session.client_turns) == 1 and "end the call" in session.client_turns[0]
            result = caller.result
            # The goodbye (1.5 s) was heard in full before the line closed.
            assert [t for t in result.heard_voiced_at if t > drain_started]
            assert result.frames_received == pytest.approx(75, abs=2)
            assert result.unplayed_at_close == 0
            if with_rest:
                (request,) = rest.requests
                assert request.method == "POST" and request.url.endswith(
                    f"/Calls/{caller.call_sid}.json"
                )
                assert request.data == {"Status": "completed"}
            else:
                assert result.close_code == 1000 and result.close_reason == "goodbye"
            assert result.close_code != 1012  # never uvicorn's shutdown close
            await until(lambda: d.services.registry.active_count == 0)
            assert (
                'bridge_calls_total{outcome="drained"} 1.0' in d.services.metrics.render().decode()
            )

    run(scenario())


def test_sigterm_drains_a_real_server_process() -> None:
    async def scenario() -> None:
        async with GeminiEmulator(
            EmulatorOptions(api_key="gemini-key-for-sigterm", reply_seconds=1.0)
        ) as emulator:
            import socket

            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                port = sock.getsockname()[1]
            env = {
                **{
                    k: v
                    for k, v in os.environ.items()
                    if not k.startswith(("GEMINI_", "TWILIO_", "GOOGLE_", "PUBLIC_"))
                },
                "PUBLIC_URL": f"http://127.0.0.1:{port}",
                "TWILIO_AUTH_TOKEN": "twilio-auth-for-sigterm",
                "GEMINI_API_KEY": "gemini-key-for-sigterm",
                "GEMINI_LIVE_URL": emulator.url,
                "DRAIN_TIMEOUT": "1",
            }
            process = subprocess.Popen(  # noqa: ASYNC220 (starting it does not block)
                serve_command(port),
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            try:
                caller = SimulatedCaller(f"http://127.0.0.1:{port}", "twilio-auth-for-sigterm")
                for _ in range(100):
                    try:
                        await caller.fetch_twiml()
                        break
                    except OSError:
                        await asyncio.sleep(0.1)
                async with caller.dial() as call:
                    stats_url = f"http://127.0.0.1:{port}/api/calls/stats"

                    def call_is_up() -> bool:
                        with urllib.request.urlopen(stats_url, timeout=2) as response:
                            calls = json.loads(response.read())["active_calls"]
                        return bool(calls) and calls[0]["gemini_state"] == "open"

                    for _ in range(100):
                        if await asyncio.to_thread(call_is_up):
                            break
                        await asyncio.sleep(0.05)
                    process.send_signal(signal.SIGTERM)
                    await call.wait_closed(timeout=15)
                assert caller.result.close_code == 1000 and caller.result.close_reason == "goodbye"
                assert caller.result.heard_voiced_at  # the goodbye
                (session,) = [s for s in emulator.sessions if s.audio_in]  # not serve's probe
                assert session.client_turns  # asked for by the drain
                exit_code = await asyncio.to_thread(process.wait, 15)
                assert exit_code in (0, -signal.SIGTERM)
            finally:
                if process.poll() is None:
                    process.kill()
                stderr = process.stderr.read() if process.stderr else ""
            assert "draining" in stderr and "drained" in stderr

    run(scenario(), timeout=60)


def test_a_call_still_setting_up_when_draining_ends_also_gets_its_goodbye() -> None:
    async def scenario() -> None:
        options = EmulatorOptions(reply_seconds=1.0, faults=FaultPlan(setup_delay=1.0))
        env = {"DRAIN_TIMEOUT": "0.2", "GEMINI_PREWARM": "false"}
        async with loopback_deployment(options, env=env) as d:
            caller = d.caller()
            async with caller.dial() as call:
                await until(lambda: len(d.emulator.sessions) == 1)  # Gemini still setting up
                d.server.start_drain()
                await call.wait_closed(timeout=15)
            assert caller.result.close_code == 1000 and caller.result.close_reason == "goodbye"
            assert d.emulator.sessions[0].client_turns  # the goodbye was asked for
            assert caller.result.frames_received == pytest.approx(50, abs=2)
            assert caller.result.unplayed_at_close == 0

    run(scenario())


def test_a_second_sigterm_while_draining_does_not_cut_calls_off() -> None:
    async def scenario() -> None:
        async with loopback_deployment(env={"DRAIN_TIMEOUT": "30"}) as d:
            caller = d.caller()
            async with caller.dial():
                await until(lambda: d.services.registry.active_count == 1)
                d.server.handle_exit(signal.SIGTERM, None)  # e.g. from a preStop hook
                await until(lambda: d.services.registry.draining)
                d.server.handle_exit(signal.SIGTERM, None)  # then Kubernetes' own SIGTERM
                await asyncio.sleep(0.3)
                assert not d.server.should_exit and d.services.registry.active_count == 1
            assert caller.result.close_code == 1000

    run(scenario())
