"""Calls survive Gemini's faults: goAway, drops, refused handles, stalls, outages."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from bridge.testing.emulator import EmulatorOptions, FaultPlan
from bridge.testing.harness import Deployment, loopback_deployment
from bridge.testing.speech import load_speech

from .test_calls import SHORT, run, until

pytestmark = pytest.mark.e2e

FAST = {"GEMINI_STALL_TIMEOUT": "1.5"}


def metrics(d: Deployment) -> str:
    return d.services.metrics.render().decode()


def test_go_away_swaps_at_a_quiet_moment_and_resumes_with_the_latest_handle() -> None:
    async def scenario() -> None:
        # goAway arrives while the first answer is still being generated (real time).
        faults = {0: FaultPlan(go_away_at=2.8, go_away_time_left=20)}
        options = EmulatorOptions(reply_seconds=2.0, burst_factor=1.0, faults_by_connection=faults)
        async with loopback_deployment(options) as d:
            caller = d.caller()
            async with caller.dial() as call:
                await call.say(SHORT)
                await call.wait_for_answer(timeout=10)
                await until(lambda: len(d.emulator.sessions) == 2, timeout=10)
                first, second = d.emulator.sessions
                # Not while the model was speaking: the first answer finished on the old socket.
                assert first.answers_completed == 1
                await until(
                    lambda: (
                        d.services.registry.snapshot()["active_calls"][0]["gemini_reconnects"] == 1
                    )
                )
                await asyncio.sleep(0.3)
                await call.say(SHORT)  # the conversation goes on over the new connection
                await call.wait_for_answer(timeout=10)
                await call.wait_until_quiet(quiet_s=0.5, timeout=10)
            assert second.resumed_from is not None and second.resumed_from.startswith(
                "emulated-handle-"
            )
            assert second.setup["sessionResumption"]["handle"] == second.resumed_from
            assert first.close_code is not None  # closed before the resume (else Gemini: 1011)
            assert second.answers_completed == 1 and second.caller_turns == 1
            assert caller.result.close_code == 1000
            assert caller.result.frames_received == pytest.approx(200, abs=4)
            text = metrics(d)
            assert 'bridge_gemini_reconnects_total{reason="goAway",result="resumed"} 1.0' in text
            # The swap took one reconnect's time, and in a quiet moment: nobody heard it.
            gap = float(text.split("bridge_gemini_reconnect_gap_seconds_sum ")[1].split()[0])
            assert gap < 0.5

    run(scenario())


def test_go_away_deadline_forces_the_swap_and_no_caller_audio_is_lost() -> None:
    long_speech = load_speech("caller_hello.wav")  # ~6 s of continuous talking

    async def scenario() -> None:
        # The caller never pauses, so the swap must happen at the deadline, mid-turn.
        faults = {0: FaultPlan(go_away_at=1.0, go_away_time_left=4.0)}
        options = EmulatorOptions(reply_seconds=1.0, faults_by_connection=faults)
        async with loopback_deployment(options) as d:
            caller = d.caller()
            async with caller.dial() as call:
                await call.say(long_speech)
                await call.wait_for_answer(timeout=10)
                await call.wait_until_quiet(quiet_s=0.3, timeout=10)
            first, second = d.emulator.sessions[:2]
            assert second.resumed_from is not None
            # The caller's turn in flight at the swap was sent again, then the rest of it:
            # the new connection heard the whole question and answered it.
            said = len(long_speech) * 4  # μ-law bytes → 16 kHz PCM16 bytes
            assert len(second.audio_in) >= said * 0.9
            assert second.caller_turns == 1 and second.answers_completed == 1
            assert len(first.audio_in) + len(second.audio_in) >= caller.result.frames_sent * 640

    run(scenario())


def test_an_unexpected_1011_mid_question_resumes_and_the_question_is_answered() -> None:
    async def scenario() -> None:
        # Gemini drops right after the caller finished, before it answered.
        options = EmulatorOptions(reply_seconds=1.0, response_delay_s=1.0)
        async with loopback_deployment(options) as d:
            caller = d.caller()
            async with caller.dial() as call:
                await call.say(SHORT)
                await until(lambda: d.emulator.sessions[0].caller_turns == 1, timeout=5)
                dropped_at = time.monotonic()
                await d.emulator.drop_all(1011, "Internal error encountered.")
                answer_at = await call.wait_for_answer(timeout=10)
                await call.wait_until_quiet(quiet_s=0.3, timeout=10)
            second = d.emulator.sessions[1]
            assert second.resumed_from is not None and second.caller_turns == 1
            assert second.answers_completed == 1
            assert answer_at - dropped_at < 3.0  # reconnect + replay + 1 s "thinking"
            assert caller.result.frames_received == pytest.approx(50, abs=2)
            assert caller.result.close_code == 1000
            assert (
                'bridge_gemini_reconnects_total{reason="closed",result="resumed"} 1.0' in metrics(d)
            )

    run(scenario())


def test_when_the_handle_is_refused_a_fresh_session_carries_the_conversation() -> None:
    async def scenario() -> None:
        async with loopback_deployment(EmulatorOptions(reply_seconds=0.6)) as d:
            caller = d.caller()
            async with caller.dial() as call:
                await call.say(SHORT)
                await call.wait_for_answer(timeout=10)
                await call.wait_until_quiet(quiet_s=0.3, timeout=10)
                d.emulator.expire_handles()
                await d.emulator.drop_all()
                await until(lambda: len(d.emulator.sessions) == 3, timeout=5)
                await asyncio.sleep(0.2)
                await call.say(SHORT)
                await call.wait_for_answer(timeout=10)
            refused, fresh = d.emulator.sessions[1:3]
            assert refused.close_code == 1008  # the resume attempt
            assert fresh.resumed_from is None
            prompt = fresh.setup["systemInstruction"]["parts"][0]["text"]
            assert "already in progress" in prompt
            assert "Caller: (caller spoke for" in prompt  # the transcript so far
            assert "You: Thanks for calling." in prompt
            assert fresh.answers_started == 1
            assert 'result="fresh"} 1.0' in metrics(d)

    run(scenario())


def test_when_gemini_stays_down_the_call_ends_with_the_apology() -> None:
    async def scenario() -> None:
        options = EmulatorOptions(reply_seconds=0.5, faults=FaultPlan(refuse_setup=True))
        options.faults_by_connection[0] = FaultPlan()
        async with loopback_deployment(options, env={"GEMINI_RECONNECT_BUDGET": "2"}) as d:
            caller = d.caller()
            async with caller.dial() as call:
                await call.say(SHORT)
                await call.wait_for_answer(timeout=10)
                dropped_at = time.monotonic()
                await d.emulator.drop_all()
                await call.wait_closed(timeout=10)
                ended_after = time.monotonic() - dropped_at
            assert caller.result.close_code == 1011  # Twilio then speaks the apology
            assert ended_after < 2 + 2.5 + 1  # budget, then one full fresh attempt
            assert len(d.emulator.sessions) > 2  # it did retry, with backoff
            await until(lambda: d.services.registry.active_count == 0)
            assert d.services.registry.snapshot()["totals"]["failed"] == 1

    run(scenario())


def test_configuration_close_codes_are_not_retried() -> None:
    async def scenario() -> None:
        faults = {0: FaultPlan(close_at=2.5, close_code=1008)}
        async with loopback_deployment(
            EmulatorOptions(reply_seconds=0.5, faults_by_connection=faults)
        ) as d:
            caller = d.caller()
            async with caller.dial() as call:
                await call.wait_closed(timeout=10)
            assert caller.result.close_code == 1011
            assert len(d.emulator.sessions) == 1

    run(scenario())


def test_a_stalled_gemini_is_nudged_then_replaced_and_the_caller_gets_an_answer() -> None:
    async def scenario() -> None:
        faults = {0: FaultPlan(stall_at=0.0)}
        options = EmulatorOptions(reply_seconds=0.6, faults_by_connection=faults)
        async with loopback_deployment(options, env=FAST) as d:
            caller = d.caller()
            async with caller.dial() as call:
                await call.say(SHORT)
                answer_at = await call.wait_for_answer(timeout=15)
            first, second = d.emulator.sessions[:2]
            nudges = [m.text for m in first.messages if m.text]
            assert len(nudges) == 1 and "waiting for your answer" in nudges[0]
            assert second.resumed_from is not None and second.caller_turns == 1
            waited = answer_at - caller.result.utterances[0].voiced_until
            assert 3.0 < waited < 6.0  # two stall timeouts of 1.5 s, then a fresh answer
            m = metrics(d)
            assert "bridge_gemini_nudges_total 1.0" in m
            assert 'reason="stall",result="resumed"} 1.0' in m

    run(scenario())


@pytest.mark.parametrize(
    ("plan", "reason"),
    [(FaultPlan(refuse_setup=True), "closed"), (FaultPlan(setup_delay=10), "timeout")],
    ids=["refused", "no-answer"],
)
def test_gemini_unavailable_at_call_start_means_an_apology_within_3_s(
    plan: FaultPlan, reason: str
) -> None:
    async def scenario() -> None:
        async with loopback_deployment(EmulatorOptions(faults=plan)) as d:
            caller = d.caller()
            started = time.monotonic()
            async with caller.dial() as call:
                await call.wait_closed(timeout=5)
            # The stream closed; Twilio asked <Connect action> and was told to apologise.
            assert time.monotonic() - started < 3.0
            assert caller.result.close_code == 1011
            assert caller.result.twilio_said == [d.services.twiml.apology]
            assert f'bridge_gemini_setup_failures_total{{reason="{reason}"}} 1.0' in metrics(d)

    run(scenario())


def test_stats_show_reconnects_and_state() -> None:
    async def scenario() -> None:
        async with loopback_deployment(EmulatorOptions(reply_seconds=0.5)) as d:
            caller = d.caller()
            async with caller.dial() as call:
                await call.say(SHORT)
                await call.wait_for_answer(timeout=10)
                await d.emulator.drop_all()
                await until(
                    lambda: (
                        d.services.registry.snapshot()["active_calls"][0]["gemini_reconnects"] == 1
                    )
                )
                (live,) = json.loads(json.dumps(d.services.registry.snapshot()))["active_calls"]
                assert live["gemini_state"] == "open"

    run(scenario())
