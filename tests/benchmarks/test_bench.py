"""The benchmark: its smoke run reports every figure, and its checks can fail."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks.bench import _content_check, _frame_times
from benchmarks.bench_callers import FRAME_BYTES, caller_signal
from benchmarks.sweep import ladder_search

REPO = Path(__file__).resolve().parents[2]


def test_smoke_five_calls_for_five_seconds_reports_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "scripts/bench.py", "--calls", "5", "--seconds", "5", "--json", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(out.read_text())
    assert set(report["per_frame_us"]) == {"caller_to_gemini_us", "gemini_to_caller_us"}
    assert all(v > 0 for v in report["per_frame_us"].values())
    assert [s["mode"] for s in report["steps"]] == ["bridge", "relay", "relay+audio"]
    for step in report["steps"]:
        assert step["calls"] == 5 and step["frames_sent"] == 5 * 250
        for direction in ("caller_to_gemini_ms", "gemini_to_caller_ms", "round_trip_ms"):
            figures = step[direction]
            assert set(figures) == {"p50", "p95", "p99", "max"}
            assert all(math.isfinite(v) and v > 0 for v in figures.values())
        for name in ("frames_lost", "frames_late", "frames_reordered", "underruns"):
            assert isinstance(step[name], int)
        assert step["cpu_s_per_call_minute"] > 0 and math.isfinite(step["rss_per_call_mb"])
        assert math.isfinite(step["load_stall_max_ms"]) and step["load_stall_max_ms"] >= 0
    bridge, relay, relay_audio = report["steps"]
    # The content check sees the resamplers' delay: 1.44 ms + 1.5 ms, plus the echo's 0.06 ms;
    # through the bare relay only the echo's 8 → 24 kHz interpolation, one sample (0.125 ms).
    assert bridge["content_delay_ms"] == 3.0 and relay["content_delay_ms"] == round(1 / 8, 2)
    assert relay["frames_lost"] == 0 and relay["frames_reordered"] == 0
    assert relay_audio["content_delay_ms"] == 3.0  # it converts with the bridge's own filters
    assert relay_audio["frames_lost"] == 0 and relay_audio["frames_reordered"] == 0
    assert "round trip" in result.stdout and "relay" in result.stdout
    if all(
        step["round_trip_ms"]["p99"] < 20 and not step["frames_lost"] for step in report["steps"]
    ):
        ratios = report["cpu_vs_relay"]  # both against the bare relay at the same 5 calls
        assert set(ratios) == {"bridge", "relay+audio"} and set(ratios["bridge"]) == {"5"}
        assert all(r > 0 for by_calls in ratios.values() for r in by_calls.values())


def test_content_check_finds_frames_out_of_place_and_other_calls_audio() -> None:
    frames = 200
    own = caller_signal(7, frames)
    assert _content_check(7, frames, own) == (0, 0)
    delayed = bytes([0xFF]) * 24 + own[:-24]  # 3 ms late, as through the bridge
    assert _content_check(7, frames, delayed) == (0, 24)

    chunks = [own[i : i + FRAME_BYTES] for i in range(0, len(own), FRAME_BYTES)]
    chunks[50], chunks[51] = chunks[51], chunks[50]  # two frames swapped
    chunks[120] = caller_signal(8, frames)[120 * FRAME_BYTES : 121 * FRAME_BYTES]  # crosstalk
    assert _content_check(7, frames, b"".join(chunks))[0] == 3


def test_the_bare_relays_mulaw_comes_back_as_24_khz_pcm_and_passes_the_content_check() -> None:
    from benchmarks.bench import PCM24K_FRAME_BYTES
    from bridge.audio import ulaw_to_pcm16
    from bridge.testing.emulated_model import Echo

    frames = 200
    own = caller_signal(7, frames)
    echo = Echo(None, None)  # type: ignore[arg-type]
    back = b"".join(
        echo._ulaw_to_24k(own[i : i + FRAME_BYTES]) for i in range(0, len(own), FRAME_BYTES)
    )
    assert len(back) == frames * PCM24K_FRAME_BYTES
    # Every third output is an input sample, one late; the two between interpolate.
    out = np.frombuffer(back, "<i2").astype(np.int64)
    pcm = np.frombuffer(ulaw_to_pcm16(own), "<i2").astype(np.int64)
    assert (out[3::3] == pcm[:-1]).all() and out[0] == 0
    assert np.abs(out[4::3] - (2 * pcm[:-1] + pcm[1:]) / 3).max() <= 1
    assert _content_check(7, frames, back, pcm24k=True) == (0, 1)
    swapped = bytearray(back)
    a, b = 60 * PCM24K_FRAME_BYTES, 61 * PCM24K_FRAME_BYTES
    swapped[a:b], swapped[b : b + PCM24K_FRAME_BYTES] = back[b : b + PCM24K_FRAME_BYTES], back[a:b]
    assert _content_check(7, frames, bytes(swapped), pcm24k=True)[0] == 2


def test_frames_are_timed_by_the_arrival_of_their_last_byte() -> None:
    events = [(1.0, 160), (2.0, 320), (3.0, 100)]
    times = _frame_times(events, 160, 5)
    assert list(times[:3]) == [1.0, 2.0, 2.0]
    assert np.isnan(times[3]) and np.isnan(times[4])


def test_the_echo_interpolates_16_to_24_khz_like_np_interp() -> None:
    import numpy as np

    from bridge.testing.emulated_model import Echo

    rng = np.random.default_rng(3)
    chunks = [(rng.standard_normal(n) * 8000).astype("<i2") for n in (320, 320, 7, 320)]
    echo = Echo(None, None)  # type: ignore[arg-type]
    out = np.frombuffer(b"".join(echo._to_24k(c.tobytes()) for c in chunks), "<i2")
    signal = np.concatenate(chunks).astype(np.float64)
    known = np.concatenate(([0.0], signal))  # one input sample late
    # Where chunk boundaries fall, output positions restart: rebuild them chunk by chunk.
    at, start = [], 0
    for c in chunks:
        at.append(start + np.arange(len(c) * 3 // 2) * (2 / 3))
        start += len(c)
    expected = np.interp(np.concatenate(at), np.arange(len(known)), known)
    assert len(out) == len(expected)
    assert np.abs(out - np.trunc(expected)).max() <= 1  # float32 against float64 rounding


def test_the_search_climbs_the_ladder_then_halves_the_gap() -> None:
    def run(limit: int) -> tuple[list[int], int]:
        search, tried = ladder_search((10, 25, 50, 100, 200)), []
        calls = next(search)
        while True:
            tried.append(calls)
            try:
                calls = search.send(calls <= limit)
            except StopIteration as done:
                return tried, done.value

    assert run(165) == ([10, 25, 50, 100, 200, 150, 175, 162, 168], 162)
    assert run(160) == ([10, 25, 50, 100, 200, 150, 175, 162, 156], 156)
    assert run(134) == ([10, 25, 50, 100, 200, 150, 125, 137, 131], 131)
    assert run(5) == ([10, 5], 5)
    assert run(2) == ([10, 5], 0)
    assert run(1000) == ([10, 25, 50, 100, 200], 200)  # the top of the ladder passed


def test_the_sweep_takes_turns_and_tries_a_failed_step_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from types import SimpleNamespace

    from benchmarks import sweep

    ran: list[tuple[str, int]] = []
    hiccups = {("b", 50)}  # one slow spell: the first try of b at 50 calls fails

    def fake_step(mode: str, calls: int, *args: object) -> SimpleNamespace:
        ran.append((mode, calls))
        passed = calls <= {"a": 30, "b": 60}[mode]
        if (mode, calls) in hiccups:
            hiccups.discard((mode, calls))
            passed = False
        return SimpleNamespace(mode=mode, calls=calls, passed=passed, name=mode)

    monkeypatch.setattr(sweep, "run_step", fake_step)
    steps, best = sweep.sweep([("a", 1), ("b", 1)], None, 1.0, ladder=(10, 25, 50, 100))  # type: ignore[arg-type]
    assert best == {"a": 28, "b": 59}
    assert ran[:6] == [("a", 10), ("b", 10), ("a", 25), ("b", 25), ("a", 50), ("a", 50)]
    assert ("b", 50) in ran[6:8] and ran.count(("b", 50)) == 2  # failed once, then passed
    assert len(steps) == len(ran)


def test_cpu_against_the_relay_compares_passing_steps_at_equal_calls() -> None:
    from types import SimpleNamespace

    from benchmarks.sweep import cpu_against_relay

    def step(name: str, calls: int, cpu: float, passed: bool = True) -> SimpleNamespace:
        return SimpleNamespace(name=name, calls=calls, cpu_s_per_call_minute=cpu, passed=passed)

    steps = [
        step("bridge", 50, 0.5),
        step("relay", 50, 0.4),
        step("relay+audio", 50, 0.44),
        step("bridge", 100, 0.9, passed=False),  # overloaded: its CPU says nothing
        step("bridge", 100, 0.42),  # the second try passed
        step("relay", 100, 0.3),
        step("relay+audio", 100, 0.5, passed=False),
        step("relay+audio", 100, 0.6, passed=False),
        step("relay", 200, 0.25),  # the bridge never ran 200
    ]
    assert cpu_against_relay(steps) == {  # type: ignore[arg-type]
        "bridge": {50: 1.25, 100: 1.4},
        "relay+audio": {50: 1.1},
    }
    assert cpu_against_relay([step("bridge", 50, 0.5)]) == {}  # type: ignore[arg-type]


def test_a_load_process_notes_when_its_event_loop_was_held_up() -> None:
    import asyncio
    import time

    from benchmarks.loop_stalls import LoopStalls, worst_ms

    def hold_the_loop() -> None:
        time.sleep(0.06)  # what a long callback, or a busy host, does to the loop

    async def main() -> tuple[list[tuple[float, float]], float, float]:
        stalls = LoopStalls()
        watching = asyncio.create_task(stalls.run())
        try:
            await asyncio.sleep(0.05)
            held = time.monotonic()
            asyncio.get_running_loop().call_soon(hold_the_loop)
            await asyncio.sleep(0.1)
        finally:
            watching.cancel()
        return stalls.take(), held, time.monotonic()

    noted, held, end = asyncio.run(main())
    assert worst_ms(noted, held, end) >= 50  # the wake-up due in the held 60 ms came late
    assert worst_ms(noted, end, end + 1) == 0.0  # outside the window: not counted


def test_the_worst_stall_counts_only_the_steps_window() -> None:
    from benchmarks.loop_stalls import worst_ms

    noted = [(10.0, 0.030), (12.0, 0.012), (15.5, 0.050)]
    assert worst_ms(noted, 11.0, 15.0) == 12.0
    assert worst_ms(noted, 9.0, 16.0) == 50.0
    assert worst_ms([], 0.0, 1.0) == 0.0
