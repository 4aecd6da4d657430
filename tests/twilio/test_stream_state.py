"""A Media Stream's order, without sockets: connected, start once, events, stop."""

from __future__ import annotations

import json

import pytest

from bridge.twilio.media_streams import (
    Dtmf,
    Stop,
    UnknownEvent,
    connected_event,
    media_event,
    parse_twilio_event,
    start_event,
    stop_event,
)
from bridge.twilio.stream_state import (
    MAX_FRAME_BEFORE_START,
    StreamPhase,
    StreamViolation,
    TwilioStream,
    Violation,
)

CALL, STREAM = "CA" + "1" * 32, "MZ" + "2" * 32
START = start_event(
    stream_sid=STREAM, call_sid=CALL, account_sid="AC" + "0" * 32, custom_parameters={}
)
MEDIA = media_event(stream_sid=STREAM, sequence_number=1, chunk=1, timestamp_ms=0, ulaw=b"")
UNKNOWN = json.dumps({"event": "transcription", "streamSid": STREAM})


def violation(stream: TwilioStream, frame: str) -> Violation:
    with pytest.raises(StreamViolation) as info:
        stream.before_start(frame)
    return info.value.violation


def test_connected_then_start() -> None:
    stream = TwilioStream()
    assert stream.before_start(connected_event()) is None
    started = stream.before_start(START)
    assert started is not None and started.call_sid == CALL
    assert stream.phase is StreamPhase.STARTED


def test_start_may_come_without_connected() -> None:
    assert TwilioStream().before_start(START) is not None


def test_a_frame_bigger_than_any_start_is_refused_before_it_is_parsed() -> None:
    huge = json.dumps({"event": "connected", "pad": "x" * MAX_FRAME_BEFORE_START})
    assert violation(TwilioStream(), huge) is Violation.TOO_BIG


def test_one_connected_and_no_media_before_start() -> None:
    stream = TwilioStream()
    stream.before_start(connected_event())
    assert violation(stream, connected_event()) is Violation.OUT_OF_ORDER
    assert violation(TwilioStream(), MEDIA) is Violation.OUT_OF_ORDER
    assert violation(TwilioStream(), "{nope") is Violation.MALFORMED


def test_a_few_unknown_events_before_start_are_ignored_and_then_no_more() -> None:
    stream = TwilioStream(unknown_events_before_start=2)
    assert stream.before_start(UNKNOWN) is None and stream.before_start(UNKNOWN) is None
    assert stream.unknown_events == 2 and stream.first_unknown == "transcription"
    assert violation(stream, UNKNOWN) is Violation.OUT_OF_ORDER


def test_after_start_unknown_events_are_ignored_a_second_start_is_not() -> None:
    stream = TwilioStream()
    stream.before_start(START)
    assert stream.after_start(parse_twilio_event(UNKNOWN)) is None
    assert stream.after_start(UnknownEvent("another")) is None
    assert stream.unknown_events == 2 and stream.first_unknown == "transcription"
    digit = Dtmf(STREAM, 3, "5")
    assert stream.after_start(digit) is digit
    with pytest.raises(StreamViolation) as info:
        stream.after_start(parse_twilio_event(START))
    assert info.value.violation is Violation.REPEATED_START


def test_stop_ends_the_stream() -> None:
    stream = TwilioStream()
    stream.before_start(START)
    stop = parse_twilio_event(
        stop_event(stream_sid=STREAM, sequence_number=9, call_sid=CALL, account_sid="")
    )
    assert isinstance(stream.after_start(stop), Stop)
    assert stream.phase is StreamPhase.STOPPED
