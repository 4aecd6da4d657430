"""Caller audio against the wall clock (AudioPace), with a clock moved by hand."""

from __future__ import annotations

from bridge.call.audio_pace import AudioPace
from tests.fakes import Clock

FRAME = 160  # 20 ms of 8 kHz μ-law


def test_real_time_audio_never_runs_out_of_headroom() -> None:
    clock = Clock()
    pace = AudioPace(2.0, clock=clock)
    for _ in range(50 * 600):  # ten minutes, a frame every 20 ms
        clock.now += 0.02
        assert pace.take(FRAME)


def test_audio_may_run_ahead_by_the_allowance_and_no_more() -> None:
    clock = Clock()
    pace = AudioPace(2.0, clock=clock)
    assert all(pace.take(FRAME) for _ in range(100))  # 2 s at once: the allowance
    assert not pace.take(FRAME)
    assert pace.ahead_s > 2.0


def test_a_burst_after_a_hiccup_only_catches_up() -> None:
    clock = Clock()
    pace = AudioPace(2.0, clock=clock)
    for _ in range(50):  # a second in real time
        clock.now += 0.02
        assert pace.take(FRAME)
    clock.now += 8.0  # eight seconds of nothing, then all of it at once
    assert all(pace.take(FRAME) for _ in range(400))
    assert abs(pace.ahead_s) < 0.05  # caught up, not ahead
    assert all(pace.take(FRAME) for _ in range(99))  # the allowance is still there...
    assert not pace.take(2 * FRAME)  # ...and no more


def test_the_clock_is_read_only_when_the_headroom_is_spent() -> None:
    reads = 0

    def clock() -> float:
        nonlocal reads
        reads += 1
        return reads * 1.0  # a second passes between readings

    pace = AudioPace(1.0, clock=clock)
    reads_at_start = reads
    for _ in range(49):  # under a second of audio: no reading needed
        assert pace.take(FRAME)
    assert reads == reads_at_start
    assert pace.take(FRAME * 2) and reads == reads_at_start + 1


def test_restart_starts_the_allowance_over() -> None:
    clock = Clock()
    pace = AudioPace(1.0, clock=clock)
    clock.now += 30.0  # a minute of waiting before the stream starts earns nothing
    pace.restart()
    assert all(pace.take(FRAME) for _ in range(50))
    assert not pace.take(FRAME)
