"""The bridge's view of turns: caller questions, answered only by a completed model turn."""

from __future__ import annotations

import pytest

from bridge.call.turn_state import TurnState
from tests.fakes import QUIET, VOICE, Clock, feed


def asked(clock: Clock) -> TurnState:
    """A caller who said one thing (1 s) and has been quiet for 0.8 s."""
    state = TurnState(clock)
    feed(state, clock, QUIET, 20)
    feed(state, clock, VOICE, 50)
    feed(state, clock, QUIET, 40)
    return state


def test_a_question_ends_after_quiet_and_waits_for_an_answer() -> None:
    clock = Clock(0.0)
    state = TurnState(clock)
    feed(state, clock, QUIET, 20)
    assert not state.has_unanswered and state.unanswered_audio() == []
    feed(state, clock, VOICE, 50)
    assert state.caller_speaking and state.has_unanswered and state.waiting_since() is None
    feed(state, clock, QUIET, 40)
    assert not state.caller_speaking and state.awaiting_answer
    assert state.waiting_since() == pytest.approx(clock.now - 0.8)
    audio = state.unanswered_audio()
    # 300 ms pre-roll + the speech + the quiet after it
    assert len(audio) == 15 + 50 + 40 and all(len(a) == 640 for a in audio)
    assert max(audio[20]) > 0 and audio[0] == bytes(640)  # speech after the silent pre-roll


def test_the_first_answer_audio_ends_the_wait_but_not_the_question() -> None:
    clock = Clock(0.0)
    state = asked(clock)
    state.on_model_audio()
    assert state.model_generating and state.answer_started
    assert state.waiting_since() is None and not state.awaiting_answer
    # Until the answer's turnComplete the question is kept: a cut would lose it.
    assert state.has_unanswered and len(state.unanswered_audio()) == 105
    state.on_model_turn_complete()
    assert not state.model_generating and not state.has_unanswered
    assert state.unanswered_audio() == []


def test_a_cut_answer_leaves_its_question_to_the_next_connection() -> None:
    clock = Clock(0.0)
    state = asked(clock)
    state.on_model_audio()
    feed(state, clock, QUIET, 10)
    state.on_model_turn_cut()
    assert not state.model_generating and not state.answer_started
    assert state.has_unanswered and len(state.unanswered_audio()) == 115
    clock.now += 1
    state.restart_wait()  # the question was sent again
    assert state.waiting_since() == clock.now and state.awaiting_answer


def test_speech_during_the_answer_is_the_next_question() -> None:
    clock = Clock(0.0)
    state = asked(clock)
    state.on_model_audio()
    feed(state, clock, QUIET, 10)
    feed(state, clock, VOICE, 25)  # a remark while the model answers
    feed(state, clock, QUIET, 40)
    assert state.waiting_since() is None  # the model is still generating
    state.on_model_turn_complete()
    # The first question is answered; the remark (from its pre-roll) is what is left.
    audio = state.unanswered_audio()
    assert len(audio) == 15 + 25 + 40
    assert audio[0] == bytes(640) and max(audio[15]) > 0
    assert state.waiting_since() == clock.now  # and its wait starts as the turn ends


def test_an_interruption_drops_the_question_it_cut_off_and_keeps_the_new_one() -> None:
    clock = Clock(0.0)
    state = asked(clock)
    state.on_model_audio()
    feed(state, clock, QUIET, 10)
    feed(state, clock, VOICE, 5)  # the caller barges in
    state.on_model_interrupted()
    assert state.caller_speaking and state.has_unanswered
    assert len(state.unanswered_audio()) == 15 + 5
    assert state.waiting_since() is None  # still speaking


def test_an_interruption_of_playback_after_the_turn_completed_answers_nothing() -> None:
    clock = Clock(0.0)
    state = asked(clock)
    state.on_model_audio()
    state.on_model_turn_complete()  # generated; still playing at the caller
    feed(state, clock, QUIET, 20)
    feed(state, clock, VOICE, 5)
    state.on_model_interrupted()  # the caller talks over the playback
    assert state.has_unanswered and len(state.unanswered_audio()) == 15 + 5


def test_a_tool_call_opens_the_models_turn() -> None:
    clock = Clock(0.0)
    state = asked(clock)
    state.on_model_tool_call()
    assert state.model_generating and not state.answer_started
    assert state.waiting_since() is None and state.has_unanswered
    feed(state, clock, QUIET, 50)
    state.on_model_turn_cut()  # the tool was still running
    assert state.has_unanswered and not state.model_generating


def test_a_pause_mid_sentence_continues_the_same_question() -> None:
    clock = Clock(0.0)
    state = TurnState(clock)
    feed(state, clock, VOICE, 10)
    feed(state, clock, QUIET, 40)  # the utterance ends...
    feed(state, clock, VOICE, 10)  # ...but the caller goes on before any answer
    assert len(state.unanswered_audio()) >= 60
    state.on_model_audio()
    state.on_model_turn_complete()
    assert not state.has_unanswered  # both parts were asked before the answer began


def test_restart_wait_needs_an_unanswered_question() -> None:
    clock = Clock(0.0)
    state = TurnState(clock)
    state.restart_wait()
    assert state.waiting_since() is None
    state = asked(clock)
    clock.now += 5
    state.restart_wait()
    assert state.waiting_since() == clock.now
