"""The per-call deadlines that replace a timer per frame."""

from __future__ import annotations

import pytest

from bridge.call.outcome import Rejection, StreamRejected
from bridge.call.wire_watch import SendStalled, WireWatch
from tests.fakes import Clock


def test_silence_from_twilio_ends_the_call_as_idle() -> None:
    clock = Clock()
    watch = WireWatch(15.0, 5.0, clock)
    clock.now += 14.9
    watch.check()
    watch.last_frame = clock.now  # a frame arrived
    clock.now += 14.9
    watch.check()
    clock.now += 0.2
    with pytest.raises(StreamRejected) as raised:
        watch.check()
    assert raised.value.rejection is Rejection.IDLE and raised.value.code == 1008


@pytest.mark.parametrize("side", ["sending_to_gemini", "sending_to_caller"])
def test_a_send_that_hangs_is_caught_and_a_finished_one_is_forgotten(side: str) -> None:
    clock = Clock()
    watch = WireWatch(15.0, 5.0, clock)
    setattr(watch, side, clock.now)
    clock.now += 4.0
    watch.last_frame = clock.now
    watch.check()
    setattr(watch, side, None)  # it completed
    clock.now += 4.0
    watch.check()
    setattr(watch, side, clock.now)
    clock.now += 5.5
    watch.last_frame = clock.now
    with pytest.raises(SendStalled, match="Gemini" if side == "sending_to_gemini" else "Twilio"):
        watch.check()
