"""The flood limit: a stream at Twilio's pace is never refused, a flood always is."""

from __future__ import annotations

import pytest

from bridge.call.rate_limit import TokenBucket


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def passed(bucket: TokenBucket, clock: Clock, per_second: float, seconds: float) -> int:
    """Messages evenly spaced at ``per_second`` for ``seconds``; how many got through."""
    count = int(per_second * seconds)
    start, ok = clock.now, 0
    for i in range(count):
        clock.now = start + i / per_second
        ok += bucket.take()
    clock.now = start + seconds
    return ok


def test_twilios_pace_and_a_little_over_pass_for_an_hour() -> None:
    clock = Clock()
    bucket = TokenBucket(150, 300, clock)
    assert passed(bucket, clock, 50, 3600) == 50 * 3600  # media frames
    assert passed(bucket, clock, 149, 600) == 149 * 600  # frames, marks, keys: under the rate


def test_a_burst_up_to_the_capacity_passes_and_the_next_message_does_not() -> None:
    clock = Clock()
    bucket = TokenBucket(150, 300, clock)
    assert all(bucket.take() for _ in range(300))
    assert not bucket.take()
    clock.now += 0.1  # 15 tokens back
    assert sum(bucket.take() for _ in range(100)) == 15


@pytest.mark.parametrize("per_second", [160, 300, 5000])
def test_a_sustained_flood_is_held_to_the_capacity_plus_the_rate(per_second: int) -> None:
    clock = Clock()
    bucket = TokenBucket(150, 300, clock)
    seconds = 40
    ok = passed(bucket, clock, per_second, seconds)
    assert ok <= 300 + 150 * seconds
    assert ok >= 150 * seconds  # the rate itself still gets through
    if per_second > 150 + 300 / seconds:
        assert ok < per_second * seconds  # and the flood was refused


def test_after_a_flood_a_quiet_stream_passes_again() -> None:
    clock = Clock()
    bucket = TokenBucket(150, 300, clock)
    assert passed(bucket, clock, 5000, 2) < 1000
    clock.now += 1.0
    assert passed(bucket, clock, 50, 60) == 50 * 60
