"""Mark bookkeeping: what is still queued at Twilio."""

from bridge.playback import PlaybackTracker


def test_marks_track_what_has_played() -> None:
    tracker = PlaybackTracker()
    first = tracker.next_mark(10)
    second = tracker.next_mark(5)
    assert tracker.is_playing and tracker.queued_ms == 300
    tracker.on_mark(first)
    assert tracker.is_playing and tracker.queued_ms == 100
    tracker.on_mark(second)
    assert not tracker.is_playing and tracker.queued_ms == 0


def test_a_later_echo_covers_earlier_marks_and_unknown_names_are_ignored() -> None:
    tracker = PlaybackTracker()
    tracker.next_mark(1)
    last = tracker.next_mark(1)
    tracker.on_mark("from-another-life")
    assert tracker.queued_ms == 40
    tracker.on_mark(last)
    assert not tracker.is_playing


def test_clear_empties_the_queue_and_late_echoes_change_nothing() -> None:
    tracker = PlaybackTracker()
    name = tracker.next_mark(50)
    tracker.on_clear()
    assert not tracker.is_playing and tracker.queued_ms == 0
    tracker.on_mark(name)
    assert tracker.frames_played == tracker.frames_sent == 50


def test_marks_are_sparse_but_the_end_of_a_turn_is_always_marked() -> None:
    tracker = PlaybackTracker()
    assert tracker.on_sent(1) == "m1"  # nothing outstanding: mark at once
    marks = [tracker.on_sent(1) for _ in range(11)]  # 20 ms chunks while m1 is pending
    assert [m for m in marks if m] == ["m2", "m3"]  # one per 100 ms of audio
    assert tracker.is_playing and tracker.queued_ms == 12 * 20
    tracker.on_mark("m3")
    assert tracker.is_playing  # one frame went out after m3: still counted as playing
    assert tracker.on_sent(0, end_of_turn=True) == "m4"  # the turn's tail gets its mark
    assert tracker.on_sent(0, end_of_turn=True) is None  # nothing new, no mark
    tracker.on_mark("m4")
    assert not tracker.is_playing and tracker.queued_ms == 0
