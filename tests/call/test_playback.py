"""Playback bookkeeping: what is still queued at Twilio, from mark echoes and the clock."""

from bridge.call.playback import UNMARKED_GRACE_S, PlaybackTracker
from tests.fakes import Clock


def test_marks_track_what_has_played() -> None:
    tracker = PlaybackTracker(Clock())
    first = tracker.next_mark(10)
    second = tracker.next_mark(5)
    assert tracker.is_playing and tracker.queued_ms == 300
    tracker.on_mark(first)
    assert tracker.is_playing and tracker.queued_ms == 100
    tracker.on_mark(second)
    assert not tracker.is_playing and tracker.queued_ms == 0


def test_a_later_echo_covers_earlier_marks_and_unknown_names_are_ignored() -> None:
    tracker = PlaybackTracker(Clock())
    tracker.next_mark(1)
    last = tracker.next_mark(1)
    tracker.on_mark("from-another-life")
    assert tracker.queued_ms == 40
    tracker.on_mark(last)
    assert not tracker.is_playing


def test_clear_empties_the_queue_and_late_echoes_change_nothing() -> None:
    tracker = PlaybackTracker(Clock())
    name = tracker.next_mark(50)
    tracker.on_clear()
    assert not tracker.is_playing and tracker.queued_ms == 0
    tracker.on_mark(name)
    assert tracker.frames_played == tracker.frames_sent == 50


def test_one_mark_per_turn_after_its_last_frame() -> None:
    clock = Clock()
    tracker = PlaybackTracker(clock)
    marks = []
    for _ in range(50):  # a second of audio, in real time
        marks.append(tracker.on_sent(1))
        clock.now += 0.02
    assert marks == [None] * 50  # no mark within the turn
    assert tracker.on_sent(1, end_of_turn=True) == "m1"  # the turn's tail gets its mark
    assert tracker.on_sent(0, end_of_turn=True) is None  # nothing new, no mark
    clock.now += 60  # however long Twilio takes, the turn plays until its mark comes back
    assert tracker.is_playing
    tracker.on_mark("m1")
    assert not tracker.is_playing and tracker.queued_ms == 0


def test_within_a_turn_the_clock_says_what_is_queued() -> None:
    clock = Clock()
    tracker = PlaybackTracker(clock)
    tracker.on_sent(100)  # 2 s of audio arrive at once, faster than real time
    clock.now += 0.5
    assert tracker.is_playing and tracker.queued_ms == 1500
    tracker.on_sent(50)  # one more second joins the back of Twilio's queue
    assert tracker.queued_ms == 2500
    clock.now += 2.5
    assert tracker.queued_ms == 0
    assert tracker.is_playing  # unconfirmed: the network and Twilio's buffer get a grace
    clock.now += UNMARKED_GRACE_S + 0.01
    assert not tracker.is_playing  # e.g. a turn cut short by a reconnect, never marked


def test_playing_resumes_from_now_after_a_gap() -> None:
    clock = Clock()
    tracker = PlaybackTracker(clock)
    tracker.on_sent(10)
    clock.now += 5  # the buffer ran dry long ago
    tracker.on_sent(10)
    assert tracker.queued_ms == 200
