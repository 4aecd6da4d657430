"""When the link changes connections, decided without sockets: goAway timing, backoff,
the stall watch."""

from __future__ import annotations

import random

import pytest

from bridge.gemini.link_policy import (
    Backoff,
    LinkPolicy,
    StallAction,
    StallWatch,
    SwapDecision,
    SwapTiming,
)
from tests.fakes import Clock


def test_nothing_to_do_without_a_go_away() -> None:
    timing = SwapTiming(Clock())
    assert timing.decide(model_generating=False) is SwapDecision.NOT_NEEDED
    assert timing.decide(model_generating=True) is SwapDecision.NOT_NEEDED


def test_at_once_unless_the_model_is_generating() -> None:
    clock = Clock()
    timing = SwapTiming(clock)
    timing.go_away(50)
    # The caller speaking is a fine moment (their speech is replayed): only the model counts.
    assert timing.decide(model_generating=False) is SwapDecision.NOW
    assert timing.decide(model_generating=True) is SwapDecision.WAIT


def test_after_a_turn_it_waits_briefly_for_the_fresh_handle() -> None:
    clock = Clock()
    timing = SwapTiming(clock, handle_wait_s=1.0)
    timing.handle_arrived()
    timing.go_away(50)
    clock.now += 2
    timing.turn_completed()  # the answer is done; its handle has not come yet
    assert timing.decide(model_generating=False) is SwapDecision.WAIT
    clock.now += 0.1
    timing.handle_arrived()
    assert timing.decide(model_generating=False) is SwapDecision.NOW
    # And if the handle never comes, the wait ends anyway.
    timing.turn_completed()
    clock.now += 1.0
    assert timing.decide(model_generating=False) is SwapDecision.NOW


def test_the_deadline_forces_the_swap_mid_answer() -> None:
    clock = Clock()
    timing = SwapTiming(clock, margin_s=1.0)
    timing.go_away(5)
    clock.now += 3.9
    assert timing.decide(model_generating=True) is SwapDecision.WAIT
    clock.now += 0.1
    assert timing.decide(model_generating=True) is SwapDecision.FORCED
    assert timing.decide(model_generating=False) is SwapDecision.NOW
    timing.swapped()
    assert timing.decide(model_generating=True) is SwapDecision.NOT_NEEDED


def test_a_time_left_inside_the_margin_forces_at_once() -> None:
    clock = Clock()
    timing = SwapTiming(clock, margin_s=1.0)
    timing.go_away(0.5)
    assert timing.decide(model_generating=True) is SwapDecision.FORCED


def test_backoff_doubles_with_jitter_and_stops_at_the_budget() -> None:
    clock = Clock(0.0)
    policy = LinkPolicy(first_backoff_s=0.1, max_backoff_s=0.4)
    backoff = Backoff(policy, deadline=2.0, rng=random.Random(1), clock=clock)
    pauses = []
    while (pause := backoff.next_pause()) is not None:
        pauses.append(pause)
        clock.now += pause
    for pause, base in zip(pauses, [0.1, 0.2, 0.4, 0.4, 0.4], strict=False):
        assert 0.5 * base <= pause <= 1.5 * base
    assert len(pauses) >= 4 and clock.now < 2.0  # the next would have ended past the budget


def test_the_stall_watch_nudges_then_gives_up_on_the_connection() -> None:
    watch = StallWatch(LinkPolicy(stall_timeout_s=6.0, supervise_every_s=0.1, idle_check_s=1.0))
    assert watch.decide(None, 100.0) is StallAction.NONE
    assert watch.check_in(None, 100.0, go_away_pending=False) == 1.0
    assert watch.check_in(10.0, 10.5, go_away_pending=True) == 0.1
    assert watch.check_in(10.0, 15.7, go_away_pending=False) == pytest.approx(0.3)
    assert watch.decide(10.0, 15.9) is StallAction.NONE
    assert watch.decide(10.0, 16.0) is StallAction.NUDGE
    assert watch.check_in(10.0, 21.6, go_away_pending=False) == pytest.approx(0.4)
    assert watch.decide(10.0, 21.9) is StallAction.NONE
    assert watch.decide(10.0, 22.0) is StallAction.REPLACE
    watch.reset()
    assert watch.decide(30.0, 31.0) is StallAction.NONE
