"""The bridge's view of turns: caller speech, pending questions, model answers."""

from __future__ import annotations

import pytest

from bridge.turn_state import TurnState
from tests.fakes import QUIET, VOICE, Clock, feed


def test_a_turn_ends_after_quiet_and_waits_for_an_answer() -> None:
    clock = Clock(0.0)
    state = TurnState(clock)
    feed(state, clock, QUIET, 20)
    assert state.is_quiet and state.unanswered_audio() == []
    feed(state, clock, VOICE, 50)
    assert state.caller_speaking and not state.is_quiet
    feed(state, clock, QUIET, 40)
    assert state.caller_turn_pending and state.waiting_since() == pytest.approx(clock.now - 0.8)
    audio = state.unanswered_audio()
    # 300 ms pre-roll + the speech + the quiet after it
    assert len(audio) == 15 + 50 + 40 and all(len(a) == 640 for a in audio)
    assert max(audio[20]) > 0 and audio[0] == bytes(640)  # speech after the silent pre-roll
    state.on_model_audio()
    assert state.waiting_since() is None and state.unanswered_audio() == []
    assert not state.is_quiet  # the model is speaking
    state.on_model_turn_end()
    assert state.is_quiet


def test_a_pause_mid_sentence_continues_the_same_turn() -> None:
    clock = Clock(0.0)
    state = TurnState(clock)
    feed(state, clock, VOICE, 10)
    feed(state, clock, QUIET, 40)  # turn ends...
    feed(state, clock, VOICE, 10)  # ...but the caller goes on before any answer
    assert len(state.unanswered_audio()) >= 60


def test_restart_wait_after_a_replay() -> None:
    clock = Clock(0.0)
    state = TurnState(clock)
    feed(state, clock, VOICE, 10)
    feed(state, clock, QUIET, 40)
    clock.now += 5
    state.restart_wait()
    assert state.waiting_since() == clock.now
