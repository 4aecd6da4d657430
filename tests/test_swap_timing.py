"""When a goAway'd connection is swapped: never mid-answer unless the deadline forces it."""

from __future__ import annotations

from bridge.gemini.swap_timing import SwapDecision, SwapTiming
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
