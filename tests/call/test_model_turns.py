"""What the model says and what the caller heard of it, without sockets."""

from __future__ import annotations

import numpy as np
import pytest

from bridge.audio import ModelAudioStream
from bridge.call.model_turns import QUIET_MODEL_S, ModelTurns
from bridge.call.turn_state import TurnState
from tests.fakes import QUIET, VOICE, Clock, feed

CHUNK = (np.sin(np.arange(1000) / 5) * 6000).astype("<i2").tobytes()  # 41.7 ms at 24 kHz


def asked(clock: Clock) -> ModelTurns:
    questions = TurnState(clock)
    feed(questions, clock, VOICE, 40)
    feed(questions, clock, QUIET, 40)
    return ModelTurns(questions, clock)


def test_an_answer_is_sent_as_whole_frames_timed_from_the_callers_last_word() -> None:
    clock = Clock()
    turns = asked(clock)
    spoke_last = turns.questions.last_voiced_at
    audio = turns.audio((CHUNK,))
    assert audio == ModelAudioStream().to_twilio_audio(CHUNK) and len(audio) % 160 == 0
    assert turns.open and turns.answer_latency_s == pytest.approx(clock.now - spoke_last)
    turns.audio((CHUNK,))
    assert turns.answer_latency_s is None  # one latency per answer
    assert turns.sent(2) is None  # frames mid-turn need no mark
    tail = turns.generated()
    assert len(tail) == 160  # the last partial frame, padded
    mark = turns.sent(1, end_of_turn=True)
    assert mark is not None and turns.playback.is_playing
    turns.turn_complete()
    assert not turns.open and not turns.questions.has_unanswered


def test_a_barge_in_clears_what_plays_and_drops_the_rest_of_the_turn() -> None:
    clock = Clock()
    turns = asked(clock)
    turns.sent(len(turns.audio((CHUNK,) * 25)) // 160)  # a second of answer at Twilio
    assert turns.interrupted() == pytest.approx(52, abs=1)  # frames Twilio still had queued
    assert turns.dropping and not turns.playback.is_playing
    assert turns.generated() == b""  # nothing more of this turn goes out
    turns.turn_complete()
    assert not turns.dropping
    assert turns.interrupted() is None  # nothing playing: no clear


def test_the_first_audio_is_timed_from_the_call_start() -> None:
    clock = Clock(50.0)
    turns = ModelTurns(TurnState(clock), clock)
    clock.now += 0.4
    turns.sent(0)
    assert turns.first_audio_s is None
    turns.sent(3)
    assert turns.first_audio_s == pytest.approx(0.4)


def test_last_words_count_as_spoken_once_said_and_played() -> None:
    clock = Clock()
    turns = ModelTurns(TurnState(clock), clock)
    asked_at = clock.now
    clock.now += 0.1
    turns.audio((CHUNK,))
    mark = turns.sent(2, end_of_turn=True)
    turns.turn_complete()
    assert not turns.spoken_since(asked_at)  # said, not yet played
    assert mark is not None
    turns.marked(mark)
    assert turns.spoken_since(asked_at)
    later = clock.now + 1
    assert not turns.spoken_since(later)  # nothing said since
    clock.now = later + QUIET_MODEL_S + 0.1
    assert turns.spoken_since(later)  # the model stayed silent: what was queued has played
    assert turns.recheck_in(clock.now) == pytest.approx(QUIET_MODEL_S + 0.02)


def test_a_new_connection_cuts_the_turn() -> None:
    clock = Clock()
    turns = asked(clock)
    turns.audio((CHUNK[:100],))  # a partial frame waits
    turns.cut()
    assert not turns.open and turns.generated() == b""
