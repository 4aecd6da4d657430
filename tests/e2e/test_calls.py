"""Whole calls over loopback: real uvicorn server, Gemini emulator, simulated Twilio caller."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from collections.abc import Coroutine
from typing import Any

import numpy as np
import pytest
import soxr
from twilio.request_validator import RequestValidator

from bridge.audio import ulaw_to_pcm16
from bridge.testing.caller import WebhookRefused, load_speech
from bridge.testing.emulator import EmulatorOptions, bundled_reply
from bridge.testing.harness import Deployment, loopback_deployment

from ..fakes import json_log_lines

pytestmark = pytest.mark.e2e

SHORT = load_speech("caller_barge_in.wav")  # ~1.5 s of speech
HELLO = load_speech("caller_hello.wav")  # ~6 s


def run(coro: Coroutine[Any, Any, Any], timeout: float = 60) -> Any:
    async def bounded() -> Any:
        async with asyncio.timeout(timeout):
            return await coro

    return asyncio.run(bounded())


def get(deployment: Deployment, path: str, token: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(deployment.public_url + path)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


async def aget(deployment: Deployment, path: str, token: str | None = None) -> tuple[int, str]:
    return await asyncio.to_thread(get, deployment, path, token)


async def until(predicate: Any, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


def pcm(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<i2").astype(np.float64)


def best_correlation(a: np.ndarray, b: np.ndarray, max_lag: int) -> float:
    """Peak normalised cross-correlation of b against a, over lags 0..max_lag."""
    n = min(len(a), len(b) - max_lag)
    a = a[:n] - a[:n].mean()
    best = 0.0
    for lag in range(max_lag):
        seg = b[lag : lag + n] - b[lag : lag + n].mean()
        denom = np.linalg.norm(a) * np.linalg.norm(seg)
        if denom:
            best = max(best, float(np.dot(a, seg) / denom))
    return best


def test_caller_hears_the_answer() -> None:
    reply_s = 3.0

    async def scenario() -> None:
        async with loopback_deployment(EmulatorOptions(reply_seconds=reply_s)) as d:
            caller = d.caller()
            async with caller.dial() as call:
                await call.say(SHORT)
                await call.wait_for_answer(timeout=10)
                await call.wait_until_quiet(quiet_s=0.5, timeout=15)
            result = caller.result
            assert result.protocol_errors == []
            # Everything Gemini said reached the caller, as exact 20 ms frames, each of
            # Gemini's 40 ms chunks in one media message.
            assert result.frames_received == pytest.approx(reply_s * 50, abs=2)
            assert result.media_messages == pytest.approx(reply_s * 25, abs=2)
            assert result.marks_echoed >= 1
            latency = result.turn_latencies_s()[0]
            assert 0.5 < latency < 1.5  # emulator: 500 ms end-of-speech + 100 ms thinking
            # ... and it is the same speech: compare with the reply resampled offline.
            reference = soxr.resample(pcm(bundled_reply())[: int(reply_s * 24000)], 24000, 8000)
            heard = pcm(ulaw_to_pcm16(bytes(result.heard)))
            start = int((result.media_received[0] - result.stream_started_at) / 0.02) * 160 - 800
            assert best_correlation(reference[: 8000 * 2], heard[max(0, start) :], 2400) > 0.95
            await until(lambda: d.services.registry.active_count == 0)
            totals = d.services.registry.snapshot()["totals"]
            assert totals == {"active": 0, "handled": 1, "completed": 1, "failed": 0}

    run(scenario())


def test_gemini_receives_16khz_audio_matching_what_the_caller_said() -> None:
    async def scenario() -> None:
        async with loopback_deployment(EmulatorOptions(reply_seconds=1.0)) as d:
            caller = d.caller()
            async with caller.dial() as call:
                await call.say(HELLO)
                await call.wait_for_answer(timeout=10)
            session = d.emulator.sessions[0]
            assert all(m.audio_mime == "audio/pcm;rate=16000" for m in session.messages if m.audio)
            chunk_sizes = {len(m.audio) for m in session.messages if m.audio}
            assert chunk_sizes == {640}  # every 20 ms frame forwarded alone, no batching
            assert session.caller_turns == 1
            received = pcm(bytes(session.audio_in))
            said = soxr.resample(pcm(ulaw_to_pcm16(HELLO)), 8000, 16000)
            start = np.argmax(np.abs(received) > 300) - 400  # first speech, minus 25 ms
            assert best_correlation(said[:32000], received[max(0, start) :], 1200) > 0.95

    run(scenario())


@pytest.mark.parametrize(
    "burst_factor", [4.0, 1.5], ids=["answer-sent-ahead", "answer-still-generating"]
)
def test_barge_in_clears_playback_and_drops_the_rest_of_the_turn(burst_factor: float) -> None:
    reply_s = 6.0

    async def scenario() -> None:
        options = EmulatorOptions(reply_seconds=reply_s, burst_factor=burst_factor)
        async with loopback_deployment(options) as d:
            caller = d.caller()
            async with caller.dial() as call:
                await call.say(SHORT)
                first_answer = await call.wait_for_answer(timeout=10)
                await asyncio.sleep(1.5)
                # The answer is still playing: queued at "Twilio", or still arriving.
                recent = time.monotonic() - caller.result.media_received[-1] < 0.3
                assert call.is_hearing_audio or recent
                await call.say(SHORT)  # talk over it
                await call.wait_for_answer(timeout=10)
                await call.wait_until_quiet(quiet_s=0.5, timeout=20)
            result = caller.result
            assert result.protocol_errors == []
            assert len(result.clears) == 1
            cleared = result.clears[0]
            assert cleared > first_answer
            # After the clear the caller hears nothing until the second answer starts.
            second = min(t for t in result.media_received if t > result.utterances[1].voiced_until)
            assert not [t for t in result.heard_voiced_at if cleared + 0.05 < t < second]
            # The interrupted answer was not played out: ~1.5 s of it, then the second answer.
            assert len(result.heard_voiced_at) * 0.02 < reply_s + 2.5
            if burst_factor == 1.5:
                # Gemini was still generating (6 s of audio take 4 s to send at 1.5× real
                # time): the bridge dropped the rest of that turn.
                assert result.frames_received < 2 * reply_s * 50 - 150
            assert d.emulator.sessions[0].interruptions == 1
            snapshot = d.services.metrics.render().decode()
            assert "bridge_interruptions_total 1.0" in snapshot
            assert "bridge_barge_in_seconds_count 1.0" in snapshot
            cleared = snapshot.split('bridge_frames_dropped_total{reason="cleared"} ')[1].split()[0]
            assert float(cleared) > 10  # the queued rest of the answer, flushed at Twilio

    run(scenario())


def test_forged_or_unsigned_webhook_gets_403_and_no_twiml() -> None:
    async def scenario() -> None:
        async with loopback_deployment() as d:
            caller = d.caller()
            with pytest.raises(WebhookRefused) as info:
                await caller.fetch_twiml(forge=True)
            assert info.value.status == 403 and "<Response>" not in info.value.body
            status, _ = await asyncio.to_thread(caller._post_webhook, None)
            assert status == 403
            assert d.emulator.sessions == []  # nothing reached Gemini, not even a pre-warm
            await caller.fetch_twiml()
            assert caller.stream_url == (
                f"ws://127.0.0.1:{d.public_url.rsplit(':', 1)[1]}/voice-stream"
            )
            assert caller.action_url == d.public_url + "/api/stream-ended?stream=1"
            assert set(caller.parameters) == {"callSid", "from", "to", "token"}
            assert "?" not in caller.stream_url

    run(scenario())


@pytest.mark.parametrize("tamper", ["bad_token", "other_call", "replayed", "no_token"])
def test_stream_without_a_valid_token_never_reaches_gemini(tamper: str) -> None:
    async def scenario() -> None:
        async with loopback_deployment(env={"GEMINI_PREWARM_TTL": "1"}) as d:
            # Not Twilio: an attacker's stream, who cannot sign the action request after it.
            caller = d.caller(follow_actions=False)
            await caller.fetch_twiml()
            params = dict(caller.parameters)
            if tamper == "bad_token":
                params["token"] = params["token"][:-4] + "AAAA"
            elif tamper == "other_call":
                params["callSid"] = "CA" + "f" * 32
            elif tamper == "no_token":
                del params["token"]
            elif tamper == "replayed":
                first = d.caller(call_sid=caller.call_sid)
                first.stream_url, first.parameters = caller.stream_url, dict(params)
                async with first.dial():
                    await until(lambda: d.services.registry.active_count == 1)
                d.emulator.sessions.clear()
            async with caller.dial(parameters=params) as call:
                await call.wait_closed(timeout=5)
            assert caller.result.close_code == 1008
            assert caller.result.frames_received == 0
            # The signed webhook pre-warmed a session; the forged stream never got it: no
            # caller audio reached Gemini, and the unclaimed session is closed at its TTL.
            assert not [m for s in d.emulator.sessions for m in s.messages if m.audio]
            await until(lambda: all(s.close_code is not None for s in d.emulator.sessions), 3)
            metrics = d.services.metrics.render().decode()
            assert 'bridge_stream_rejections_total{reason="unauthenticated"} 1.0' in metrics

    run(scenario())


def test_signed_upgrade_is_checked_when_present() -> None:
    async def scenario() -> None:
        async with loopback_deployment(EmulatorOptions(reply_seconds=0.5)) as d:
            good = d.caller(sign_upgrade=True)
            async with good.dial() as call:
                await call.say(SHORT)
                await call.wait_for_answer(timeout=10)
            forged = d.caller(sign_upgrade=True)
            await forged.fetch_twiml()  # a genuine webhook...
            forged.auth_token = "forged"  # ...but an upgrade signed with the wrong token
            async with forged.dial() as call:
                await call.wait_closed(timeout=5)
            assert forged.result.close_code == 1008
            # Its webhook was genuine (so a session was pre-warmed), its stream was not.
            assert not [m for m in d.emulator.sessions[1].messages if m.audio]

    run(scenario())


def test_stats_and_metrics_show_the_call() -> None:
    async def scenario() -> None:
        async with loopback_deployment(EmulatorOptions(reply_seconds=1.0)) as d:
            caller = d.caller(from_number="+14155550199")
            async with caller.dial() as call:
                await call.say(SHORT)
                await call.wait_for_answer(timeout=10)
                status, body = await aget(d, "/api/calls/stats")
                assert status == 200
                stats = json.loads(body)
                (live,) = stats["active_calls"]
                assert live["call_sid"] == caller.call_sid
                assert live["caller"] == "+*******0199" and "4155550199" not in body
                assert live["gemini_state"] == "open" and live["frames_in"] > 50
                assert live["duration_s"] > 1 and live["started_at"].endswith("Z")
                assert live["turns"] == 1 and 500 < live["last_turn_ms"] < 1500
                assert stats["totals"]["active"] == 1
                status, metrics = await aget(d, "/metrics")
                assert status == 200 and "bridge_active_calls 1.0" in metrics
            await until(lambda: d.services.registry.active_count == 0)
            _, metrics = await aget(d, "/metrics")
            assert 'bridge_calls_total{outcome="completed"} 1.0' in metrics
            assert "bridge_gemini_setup_seconds_count 1.0" in metrics
            assert 'bridge_frames_total{direction="in"}' in metrics
            assert "bridge_active_calls 0.0" in metrics

            # The wire-level figures: what the bridge adds each way, and the turn gap.
            def value(name: str) -> float:
                return float(metrics.split(name + " ", 1)[1].split()[0])

            to_gemini = 'bridge_added_latency_seconds_count{direction="caller_to_gemini"}'
            to_caller = 'bridge_added_latency_seconds_count{direction="gemini_to_caller"}'
            assert value(to_gemini) > 50 and value(to_caller) >= 1
            p99_bucket = (
                'bridge_added_latency_seconds_bucket{direction="caller_to_gemini",le="0.01"}'
            )
            assert value(p99_bucket) >= 0.99 * value(to_gemini)  # p99 under 10 ms on loopback
            assert value("bridge_turn_latency_seconds_count") == 1
            assert 0.5 < value("bridge_turn_latency_seconds_sum") < 1.5
            status, body = await aget(d, "/health")
            assert status == 200 and json.loads(body) == {"status": "ok"}

    run(scenario())


def test_operator_token_guards_stats_and_metrics() -> None:
    async def scenario() -> None:
        async with loopback_deployment(env={"OPERATOR_TOKEN": "operator-secret-123"}) as d:
            for path in ("/api/calls/stats", "/metrics"):
                assert (await aget(d, path))[0] == 401
                assert (await aget(d, path, token="wrong"))[0] == 401
                assert (await aget(d, path, token="operator-secret-123"))[0] == 200
            assert (await aget(d, "/health"))[0] == 200

    run(scenario())


def test_gemini_unavailable_ends_the_stream_so_twilio_plays_the_apology() -> None:
    async def scenario() -> None:
        async with loopback_deployment(env={"GEMINI_API_KEY": "wrong-gemini-key-abc"}) as d:
            caller = d.caller()
            started = time.monotonic()
            async with caller.dial() as call:
                await call.wait_closed(timeout=5)
            # The stream closed; Twilio asked <Connect action> what next: the apology.
            assert time.monotonic() - started < 3
            assert caller.result.close_code == 1011
            assert caller.result.twilio_said == [d.services.twiml.apology]
            assert caller.result.ended_by_twilio == "hangup"
            await until(lambda: d.services.registry.active_count == 0)
            assert d.services.registry.snapshot()["totals"]["failed"] == 1
            metrics = d.services.metrics.render().decode()
            assert 'bridge_gemini_setup_failures_total{reason="config"} 1.0' in metrics
            assert 'bridge_calls_total{outcome="gemini_unavailable"} 1.0' in metrics

    run(scenario())


def test_a_malformed_frame_closes_only_that_stream() -> None:
    async def scenario() -> None:
        async with loopback_deployment(EmulatorOptions(reply_seconds=3.0)) as d:
            healthy, broken = d.caller(), d.caller()
            async with healthy.dial() as good, broken.dial() as bad:
                await good.say(SHORT)
                await until(lambda: d.services.registry.active_count == 2)
                assert bad._ws is not None
                await bad._ws.send(
                    '{"event": "media", "streamSid": "x", "media": {"payload": "%%"}}'
                )
                await bad.wait_closed(timeout=5)
                await good.wait_for_answer(timeout=10)
                await good.wait_until_quiet(quiet_s=0.5, timeout=15)
            assert broken.result.close_code == 1007
            assert healthy.result.frames_received == pytest.approx(150, abs=2)
            metrics = d.services.metrics.render().decode()
            assert 'bridge_stream_rejections_total{reason="protocol"} 1.0' in metrics

    run(scenario())


def test_a_call_over_vertex_ai_with_oauth() -> None:
    from google.oauth2.credentials import Credentials

    # User credentials as `gcloud auth application-default login` leaves them: a valid
    # token (not refreshed) and a quota project, which Vertex bills.
    credentials = Credentials(token="ya29.emulated-token", quota_project_id="billing-project")

    async def scenario() -> None:
        options = EmulatorOptions(
            api_key=None, bearer_token="ya29.emulated-token", reply_seconds=1.0
        )
        async with loopback_deployment(options, vertex_credentials=credentials) as d:
            caller = d.caller()
            async with caller.dial() as call:
                await call.say(SHORT)
                await call.wait_for_answer(timeout=10)
                await call.wait_until_quiet(quiet_s=0.3, timeout=10)
                await call.press("7")
                await until(lambda: d.emulator.sessions[0].texts != [], timeout=5)
            session = d.emulator.sessions[0]
            assert session.auth == "bearer" and "LlmBidiService" in session.path
            assert session.quota_project == "billing-project"  # x-goog-user-project, as the SDK
            assert session.setup["model"] == (
                "projects/emulated/locations/us-central1/publishers/google/models/gemini-3.8-live"
            )
            assert caller.result.frames_received == pytest.approx(50, abs=2)
            # Keypad digits go as realtimeInput.text on Vertex too, as Google's SDK sends text.
            assert session.texts == ["(The caller pressed 7 on the phone keypad.)"]
            assert session.client_turns == []

    run(scenario())


def test_logs_are_json_lines_tagged_with_the_call_one_per_event() -> None:
    async def scenario() -> None:
        async with loopback_deployment(EmulatorOptions(reply_seconds=1.0)) as d:
            with json_log_lines() as lines:
                caller = d.caller()
                async with caller.dial() as call:
                    await call.say(SHORT)
                    await call.wait_for_answer(timeout=10)
                    await call.wait_until_quiet(quiet_s=0.3)
                await until(lambda: d.services.registry.active_count == 0)
            mine = [e for e in lines if e.get("call_sid") == caller.call_sid]
            streamed = [e for e in mine if "stream_sid" in e]
            assert {e["stream_sid"] for e in streamed} == {caller.stream_sid}
            assert len(mine) < 15  # one line per event, never per frame (~200 frames here)
            (ended,) = [e for e in mine if e.get("event") == "call_ended"]
            figures = ended["data"]
            assert figures["outcome"] == "completed" and figures["frames_out"] == 50
            assert figures["frames_in"] > 100 and figures["reconnects"] == 0
            (turn_ms,) = figures["turn_latencies_ms"]  # one answer, timed at the wire
            assert 500 < turn_ms < 1500
            assert any(e.get("event") == "call_started" for e in mine)
            assert all({"ts", "level", "logger", "message"} <= set(e) for e in lines)

    run(scenario())


def test_an_action_request_before_the_stream_s_server_has_said_is_asked_to_wait() -> None:
    """Twilio asks ``action`` while the call's server still holds the stream (it has not
    noticed the stream end yet): Twilio is told to pause and ask again, never an error
    (which would end the call); after a few rounds the server is taken to be stuck."""

    async def scenario() -> None:
        async with loopback_deployment() as d:
            caller = d.caller(follow_actions=False)
            async with caller.dial():
                await until(lambda: d.services.registry.active_count == 1)
                params = {**caller.webhook_params(), "CallStatus": "in-progress"}

                def ask(url: str) -> tuple[int, str]:
                    signature = RequestValidator(caller.auth_token).compute_signature(url, params)
                    return caller._post(url, params, signature)

                status, body = await asyncio.to_thread(ask, caller.action_url)
                assert status == 200 and "<Pause" in body
                assert f'<Redirect method="POST">{caller.action_url}&amp;waited=1<' in body
                status, body = await asyncio.to_thread(ask, caller.action_url + "&waited=5")
                assert status == 200 and "<Connect" in body and "stream=2" in body

    run(scenario())
