"""The edges of a live call: a goAway at any moment, messages in flight during a reconnect,
events Twilio may add, and setups Gemini refuses with a frame."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bridge.audio import ulaw_to_pcm16
from bridge.gemini.wire import FunctionCall
from bridge.testing.caller import SimulatedCaller
from bridge.testing.emulator import EmulatorOptions, FaultPlan, Moment, ScriptedToolCall
from bridge.testing.harness import loopback_deployment, serve_app

from .test_calls import SHORT, run, until

pytestmark = pytest.mark.e2e

# --- an answer whose every 20 ms says where in the answer it is ---------------------------------
#
# Block k of the answer is 100 ms of a tone at BASE_HZ + k * STEP_HZ, and word k of its
# transcription is "wk": what the caller hears tells which part of the answer it is, so
# a cut, a gap, a restart or a lost end all show.

BLOCKS = 31
BLOCK_S = 0.1
BASE_HZ, STEP_HZ = 300.0, 90.0
FRAME = 160  # 20 ms at 8 kHz


def position_coded_answer() -> tuple[bytes, str]:
    t = np.arange(int(BLOCK_S * 24000)) / 24000
    blocks = [np.sin(2 * np.pi * (BASE_HZ + k * STEP_HZ) * t) * 8000 for k in range(BLOCKS)]
    pcm = np.concatenate(blocks).astype("<i2").tobytes()
    return pcm, " ".join(f"w{k}" for k in range(BLOCKS))


def heard_blocks(heard: bytes) -> list[int | None]:
    """The answer block each 20 ms the caller heard belongs to (None: silence)."""
    samples = np.frombuffer(ulaw_to_pcm16(bytes(heard)), dtype="<i2").astype(np.float64)
    out: list[int | None] = []
    freqs = np.fft.rfftfreq(8000, 1 / 8000)
    for i in range(0, len(samples) - FRAME + 1, FRAME):
        frame = samples[i : i + FRAME]
        if np.sqrt(np.mean(frame * frame)) < 1000:
            out.append(None)
            continue
        peak = freqs[np.argmax(np.abs(np.fft.rfft(frame * np.hanning(FRAME), 8000)))]
        out.append(round((peak - BASE_HZ) / STEP_HZ))
    return out


@dataclass
class Heard:
    blocks: set[int]
    longest_gap_s: float
    seconds: float


def answer_heard(caller: SimulatedCaller, after: float) -> Heard:
    """The answer the caller heard after monotonic time ``after`` (end of their question)."""
    ticks = heard_blocks(caller.result.heard)
    first_tick_at = caller.result.stream_started_at  # the caller's clock plays one frame a tick
    start = max(0, int((after - first_tick_at) / 0.02))
    voiced = [i for i in range(start, len(ticks)) if ticks[i] is not None]
    assert voiced, "the caller heard no answer"
    gaps, run_ = 0, 0
    for i in range(voiced[0], voiced[-1] + 1):
        run_ = run_ + 1 if ticks[i] is None else 0
        gaps = max(gaps, run_)
    return Heard(
        blocks={b for b in (ticks[i] for i in voiced) if b is not None},
        longest_gap_s=gaps * 0.02,
        seconds=(voiced[-1] - voiced[0] + 1) * 0.02,
    )


@asynccontextmanager
async def slow_tool(tmp_path: Path, delay_s: float) -> AsyncIterator[str]:
    """An operator's HTTP tool that takes ``delay_s`` to answer; yields the TOOLS_FILE."""

    async def lookup(request: Request) -> JSONResponse:
        args = await request.json()
        await asyncio.sleep(delay_s)
        return JSONResponse({"order": args.get("order_id"), "status": "shipped"})

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.setblocking(False)
    app = Starlette(routes=[Route("/lookup", lookup, methods=["POST"])])
    async with serve_app(app, sock):
        path = tmp_path / f"tools-{sock.getsockname()[1]}.json"
        schema = {"type": "object", "properties": {"order_id": {"type": "string"}}}
        path.write_text(
            json.dumps(
                [
                    {
                        "name": "lookup_order",
                        "description": "Find an order.",
                        "parameters": schema,
                        "url": f"http://127.0.0.1:{sock.getsockname()[1]}/lookup",
                    }
                ]
            )
        )
        yield str(path)


LOOKUP = [FunctionCall("call-1", "lookup_order", {"order_id": "A17"})]


# --- 1. a goAway at any moment: every answer heard to its end ---------------------------------

PHASES = [
    Moment.CALLER_SPEAKING,
    Moment.GENERATING,
    Moment.ANSWER_PLAYING,
    Moment.IDLE,
    Moment.TOOL_CALL_PENDING,
]
TIME_LEFT = [2.0, 5.0, 50.0]


@dataclass
class Outcome:
    moment: Moment
    time_left: float
    answers: list[Heard]
    forced: bool  # the first connection's answer was cut before its turnComplete
    reconnects: int
    unknown_tool_answers: int


async def go_away_call(tmp_path: Path, moment: Moment, time_left: float) -> Outcome:
    reply, words = position_coded_answer()
    delay = 0.3 if moment is Moment.CALLER_SPEAKING else 0.0
    faults = {0: FaultPlan(go_away_on=moment, go_away_at=delay, go_away_time_left=time_left)}
    options = EmulatorOptions(
        reply_pcm=reply,
        answer_text=words,
        burst_factor=1.5,  # 3.1 s of answer generated in ~2 s, as Gemini: faster than it plays
        faults_by_connection=faults,
        tool_script=(
            [ScriptedToolCall(LOOKUP, on_caller_turn=1)]
            if moment is Moment.TOOL_CALL_PENDING
            else []
        ),
    )
    async with slow_tool(tmp_path, 1.5) as tools_file:
        async with loopback_deployment(options, env={"TOOLS_FILE": tools_file}) as d:
            caller = d.caller()
            answers = []
            async with caller.dial() as call:
                for _ in range(2):  # the question the goAway falls in, and one after it
                    await call.say(SHORT)
                    asked_at = caller.result.utterances[-1].voiced_until
                    await call.wait_for_answer(timeout=15)
                    await call.wait_until_quiet(quiet_s=1.2, timeout=20)
                    answers.append(answer_heard(caller, asked_at))
                await until(lambda: d.services.registry.active_count == 1)
            first = d.emulator.sessions[0]
            cut_answer = first.answers_started > first.answers_completed
            cut_tool = len(first.tool_calls_sent) > len(first.tool_responses)
            return Outcome(
                moment,
                time_left,
                answers,
                forced=cut_answer or cut_tool,
                reconnects=len(d.emulator.sessions) - 1,
                unknown_tool_answers=sum(
                    len(s.unknown_tool_responses) for s in d.emulator.sessions
                ),
            )


def test_a_go_away_at_any_moment_loses_no_answer(tmp_path: Path) -> None:
    """goAway while the caller speaks, while the model generates, while the answer plays,
    when idle, and while a tool call is pending, with 2, 5 and 50 s left: all fifteen
    calls at once. Every answer reaches the caller to its end; no silence inside an
    answer over 1 s, but for one gap of at most 1.5 s at a swap the deadline forced."""

    async def scenario() -> list[Outcome]:
        return await asyncio.gather(
            *(go_away_call(tmp_path, m, t) for m in PHASES for t in TIME_LEFT)
        )

    outcomes = run(scenario(), timeout=120)
    for outcome in outcomes:
        where = f"{outcome.moment.value}, {outcome.time_left:g} s left"
        assert outcome.reconnects == 1, where  # the goAway'd connection was left, once
        assert outcome.unknown_tool_answers == 0, where  # never a toolResponse it cannot know
        for n, heard in enumerate(outcome.answers):
            assert heard.blocks == set(range(BLOCKS)), f"{where}: answer {n + 1} not whole"
            allowed = 1.5 if outcome.forced and n == 0 else 1.0
            assert heard.longest_gap_s <= allowed, f"{where}: {heard.longest_gap_s:.2f} s gap"
    # Only where the deadline came before the answer could finish was a swap forced.
    forced = {(o.moment, o.time_left) for o in outcomes if o.forced}
    assert forced <= {(Moment.GENERATING, 2.0), (Moment.TOOL_CALL_PENDING, 2.0)}
    assert (Moment.GENERATING, 2.0) in forced
    # A cut answer is finished from what the caller heard, not started again.
    (generating_2s,) = [o for o in outcomes if o.moment is Moment.GENERATING and o.time_left == 2.0]
    assert generating_2s.answers[0].seconds < BLOCKS * BLOCK_S + 1.5


# --- 2. messages in flight during a reconnect -------------------------------------------------


def test_a_tool_answer_landing_mid_swap_reaches_the_new_connection_and_is_spoken(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        # The tool takes 1 s; Gemini drops the connection at 0.3 s and the new one takes
        # 1.5 s to set up: the answer lands while no connection can take it.
        options = EmulatorOptions(
            reply_seconds=1.0,
            tool_script=[ScriptedToolCall(LOOKUP, on_caller_turn=1)],
            faults_by_connection={1: FaultPlan(setup_delay=1.5)},
        )
        async with slow_tool(tmp_path, 1.0) as tools_file:
            env = {"TOOLS_FILE": tools_file, "GEMINI_SETUP_TIMEOUT": "3"}
            async with loopback_deployment(options, env=env) as d:
                caller = d.caller()
                async with caller.dial() as call:
                    await call.say(SHORT)
                    await until(lambda: d.emulator.sessions[0].tool_calls_sent != [], timeout=10)
                    await asyncio.sleep(0.3)
                    await d.emulator.drop_all()
                    await call.wait_for_answer(timeout=10)
                    await call.wait_until_quiet(quiet_s=0.5, timeout=10)
                first, second = d.emulator.sessions
                assert first.tool_responses == [] and second.unknown_tool_responses == []
                # The new connection never saw the call: the result reached it as text...
                (note,) = [t for t in second.texts if "lookup_order" in t]
                assert '"status": "shipped"' in note and "A17" in note
                # ...and the model spoke about it.
                assert second.answers_completed >= 1
                assert caller.result.frames_received >= 50

    run(scenario())


def test_a_keypad_digit_pressed_mid_swap_reaches_the_model() -> None:
    async def scenario() -> None:
        options = EmulatorOptions(
            reply_seconds=0.5, faults_by_connection={1: FaultPlan(setup_delay=1.0)}
        )
        async with loopback_deployment(options, env={"GEMINI_SETUP_TIMEOUT": "3"}) as d:
            caller = d.caller()
            async with caller.dial() as call:
                await call.say(SHORT)
                await call.wait_for_answer(timeout=10)
                await call.wait_until_quiet(quiet_s=0.3, timeout=10)
                await d.emulator.drop_all()
                await asyncio.sleep(0.3)  # the new connection is still setting up
                await call.press("5")
                await call.press("#")
                await until(lambda: len(d.emulator.sessions) == 2, timeout=5)
                await until(lambda: len(d.emulator.sessions[1].texts) == 2, timeout=5)
            assert d.emulator.sessions[1].texts == [
                "(The caller pressed 5 on the phone keypad.)",
                "(The caller pressed # on the phone keypad.)",
            ]

    run(scenario())


# --- 3. events Twilio may add ------------------------------------------------------------------


def test_unknown_twilio_events_are_ignored_counted_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    new_event = json.dumps(
        {"event": "transcription", "streamSid": "MZ" + "0" * 32, "transcription": {"x": 1}}
    )

    async def scenario() -> None:
        async with loopback_deployment(EmulatorOptions(reply_seconds=1.0)) as d:
            caller = d.caller()
            await caller.fetch_twiml()
            await caller.open_stream(before_start=(new_event,))
            try:
                await caller.send_raw(new_event)
                await caller.send_raw(new_event.replace("transcription", "userDefined"))
                await caller.say(SHORT)
                await caller.wait_for_answer(timeout=10)
                await caller.wait_until_quiet(quiet_s=0.3, timeout=10)
            finally:
                await caller.hang_up()
            assert caller.result.close_code == 1000  # the call went on, and ended normally
            assert caller.result.frames_received == pytest.approx(50, abs=2)
            text = d.services.metrics.render().decode()
            assert "bridge_twilio_unknown_events_total 3.0" in text  # before start and after
            assert "bridge_stream_rejections_total" not in text.split("bridge_calls_total")[0]

    with caplog.at_level(logging.INFO, logger="bridge"):
        run(scenario())
    ignored = [r for r in caplog.records if "does not know" in r.getMessage()]
    assert len(ignored) == 1 and "'transcription'" in ignored[0].getMessage()


def test_a_known_event_missing_its_fields_still_closes_the_stream() -> None:
    async def scenario() -> None:
        async with loopback_deployment(EmulatorOptions(reply_seconds=0.5)) as d:
            caller = d.caller()
            async with caller.dial() as call:
                await call.send_raw('{"event": "mark", "streamSid": "MZ1"}')
                await call.wait_closed(timeout=5)
            assert caller.result.close_code == 1007

    run(scenario())


# --- 4. a setup refused with a frame -----------------------------------------------------------


def test_a_setup_refused_with_an_error_frame_gets_the_apology_at_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    error = {"code": 400, "message": "Invalid voice configuration.", "status": "INVALID_ARGUMENT"}

    async def scenario() -> None:
        options = EmulatorOptions(faults=FaultPlan(setup_error={"error": error}))
        env = {"GEMINI_SETUP_TIMEOUT": "20", "GEMINI_PREWARM": "false"}
        async with loopback_deployment(options, env=env) as d:
            caller = d.caller()
            async with caller.dial() as call:
                await call.wait_closed(timeout=5)  # not the 20 s setup timeout
            assert caller.result.close_code == 1011  # Twilio then speaks the apology
            text = d.services.metrics.render().decode()
            assert 'bridge_gemini_setup_failures_total{reason="config"} 1.0' in text

    with caplog.at_level(logging.ERROR, logger="bridge"):
        run(scenario())
    assert any("Invalid voice configuration." in r.getMessage() for r in caplog.records)
