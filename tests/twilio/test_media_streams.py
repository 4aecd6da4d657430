"""The Media Streams protocol, both roles, without sockets."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given, settings

from bridge.twilio.media_streams import (
    MAX_MEDIA_PAYLOAD_BYTES,
    MAX_MESSAGE_BYTES,
    Clear,
    Connected,
    Dtmf,
    Mark,
    Media,
    OutboundMark,
    OutboundMedia,
    ProtocolError,
    Start,
    Stop,
    UnknownEvent,
    clear_message,
    connected_event,
    dtmf_event,
    is_valid_sid,
    mark_event,
    mark_message,
    media_event,
    media_message,
    parse_bridge_message,
    parse_twilio_event,
    start_event,
    stop_event,
)
from tests.fakes import one_character_off

STREAM = "MZ" + "a" * 32
CALL = "CA" + "b" * 32
ACCOUNT = "AC" + "c" * 32


def test_connected() -> None:
    assert parse_twilio_event(connected_event()) == Connected("Call", "1.0.0")


def test_start_as_twilio_sends_it() -> None:
    # Verbatim shape from Twilio's docs: numbers as strings, mediaFormat as ints.
    raw = json.dumps(
        {
            "event": "start",
            "sequenceNumber": "1",
            "start": {
                "accountSid": ACCOUNT,
                "streamSid": STREAM,
                "callSid": CALL,
                "tracks": ["inbound"],
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                "customParameters": {"token": "abc", "from": "+1415"},
            },
            "streamSid": STREAM,
        }
    )
    event = parse_twilio_event(raw)
    assert isinstance(event, Start)
    assert (event.stream_sid, event.call_sid, event.account_sid) == (STREAM, CALL, ACCOUNT)
    assert event.sequence_number == 1
    assert event.media_format.sample_rate == 8000 and event.media_format.encoding == "audio/x-mulaw"
    assert event.custom_parameters == {"token": "abc", "from": "+1415"}
    assert event.tracks == ("inbound",)


def test_start_builder_round_trips() -> None:
    raw = start_event(
        stream_sid=STREAM, call_sid=CALL, account_sid=ACCOUNT, custom_parameters={"a": "b"}
    )
    event = parse_twilio_event(raw)
    assert isinstance(event, Start) and event.custom_parameters == {"a": "b"}


def test_media_numbers_arrive_as_strings() -> None:
    payload = bytes(range(160))
    event = parse_twilio_event(
        media_event(stream_sid=STREAM, sequence_number=4, chunk=2, timestamp_ms=40, ulaw=payload)
    )
    assert event == Media(STREAM, 4, "inbound", 2, 40, payload)


def test_mark_dtmf_stop() -> None:
    assert parse_twilio_event(mark_event(stream_sid=STREAM, sequence_number=5, name="m1")) == Mark(
        STREAM, 5, "m1"
    )
    assert parse_twilio_event(dtmf_event(stream_sid=STREAM, sequence_number=6, digit="#")) == Dtmf(
        STREAM, 6, "#"
    )
    stop = parse_twilio_event(
        stop_event(stream_sid=STREAM, sequence_number=7, call_sid=CALL, account_sid=ACCOUNT)
    )
    assert stop == Stop(STREAM, 7, CALL, ACCOUNT)


def test_unknown_events_are_reported_not_fatal() -> None:
    assert parse_twilio_event('{"event": "futureThing", "streamSid": "x"}') == UnknownEvent(
        "futureThing"
    )


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (b'{"event": "media"}', "binary"),
        ("not json", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"no": "event"}', "'event'"),
        ('{"event": "media", "streamSid": "MZ1", "media": {"payload": "%%%"}}', "base64"),
        ('{"event": "media", "streamSid": "MZ1", "media": "x"}', "'media'"),
        (
            '{"event": "media", "streamSid": "MZ1", "sequenceNumber": "-3", "media": {"payload": ""}}',
            "number",
        ),
        (
            '{"event": "media", "streamSid": "MZ1", "sequenceNumber": true, "media": {"payload": ""}}',
            "number",
        ),
        ('{"event": "media", "streamSid": 7, "media": {"payload": ""}}', "'streamSid'"),
        (
            '{"event": "start", "start": {"callSid": "CA1", "streamSid": "MZ1", "customParameters": {"a": 1}}}',
            "customParameters",
        ),
        ('{"event": "dtmf", "streamSid": "MZ1", "dtmf": {"digit": "12"}}', "keypad"),
        ('{"event": "mark", "streamSid": "MZ1", "mark": {}}', "'name'"),
        ("[" * 100000, "cap"),
    ],
)
def test_bad_frames_raise_a_loggable_reason(frame: str | bytes, reason: str) -> None:
    with pytest.raises(ProtocolError, match=reason):
        parse_twilio_event(frame)


def test_size_cap() -> None:
    big = json.dumps(
        {"event": "media", "streamSid": STREAM, "media": {"payload": "A" * MAX_MESSAGE_BYTES}}
    )
    with pytest.raises(ProtocolError, match="cap"):
        parse_twilio_event(big)


def test_a_media_payload_over_half_a_second_is_refused_on_both_paths() -> None:
    largest = media_event(
        stream_sid=STREAM,
        sequence_number=2,
        chunk=1,
        timestamp_ms=0,
        ulaw=b"\xff" * MAX_MEDIA_PAYLOAD_BYTES,
    )
    assert len(parse_twilio_event(largest).payload) == MAX_MEDIA_PAYLOAD_BYTES  # type: ignore[union-attr]
    over = media_event(
        stream_sid=STREAM,
        sequence_number=2,
        chunk=1,
        timestamp_ms=0,
        ulaw=b"\xff" * (MAX_MEDIA_PAYLOAD_BYTES + 1),
    )
    unusual = json.dumps(json.loads(over))  # not Twilio's own layout: the general path
    for frame in (over, unusual):
        with pytest.raises(ProtocolError, match=f"over the {MAX_MEDIA_PAYLOAD_BYTES}-byte cap"):
            parse_twilio_event(frame)


def test_bridge_messages_are_what_twilio_accepts() -> None:
    frame = bytes([0x7F]) * 160
    media = json.loads(media_message(STREAM, frame))
    assert media == {
        "event": "media",
        "streamSid": STREAM,
        "media": {"payload": base64.b64encode(frame).decode()},
    }
    assert json.loads(mark_message(STREAM, "m1")) == {
        "event": "mark",
        "streamSid": STREAM,
        "mark": {"name": "m1"},
    }
    assert json.loads(clear_message(STREAM)) == {"event": "clear", "streamSid": STREAM}
    assert parse_bridge_message(media_message(STREAM, frame)) == OutboundMedia(STREAM, frame)
    assert parse_bridge_message(mark_message(STREAM, "x")) == OutboundMark(STREAM, "x")
    assert parse_bridge_message(clear_message(STREAM)) == Clear(STREAM)
    with pytest.raises(ProtocolError, match="31951"):
        parse_bridge_message('{"event": "start", "streamSid": "MZ1"}')


def test_sid_format() -> None:
    assert is_valid_sid(STREAM, "MZ") and is_valid_sid(CALL, "CA")
    assert not is_valid_sid(CALL, "MZ")
    assert not is_valid_sid('MZ"' + "a" * 31, "MZ")
    assert not is_valid_sid("MZ123", "MZ")


def _both_ways(frame: str) -> list[object]:
    """What parse_twilio_event makes of ``frame`` with the media fast path and without."""
    from bridge.twilio import media_streams

    fast_path = media_streams._usual_media
    outcomes: list[object] = []
    for usual in (fast_path, lambda data: None):
        media_streams._usual_media = usual  # type: ignore[assignment]
        try:
            outcomes.append(parse_twilio_event(frame))
        except ProtocolError as exc:
            outcomes.append(str(exc))
        finally:
            media_streams._usual_media = fast_path
    return outcomes


TWILIO_MEDIA = media_event(
    stream_sid=STREAM, sequence_number=4, chunk=2, timestamp_ms=40, ulaw=bytes(range(160))
)


def test_media_as_twilio_sends_it_takes_the_fast_path() -> None:
    from bridge.twilio.media_streams import _usual_media

    # Byte for byte as logged from a real call (key order, no spaces).
    real = (
        '{"event":"media","sequenceNumber":"2","media":{"track":"inbound","chunk":"1",'
        '"timestamp":"155","payload":"f39///////9/f39/"},"streamSid":"MZ5174584e1127285e2b015e720b3d9e68"}'
    )
    assert _usual_media(real) == Media(
        "MZ5174584e1127285e2b015e720b3d9e68",
        2,
        "inbound",
        1,
        155,
        base64.b64decode("f39///////9/f39/"),
    )
    assert _usual_media(TWILIO_MEDIA) is not None


def test_the_usual_media_fast_path_reads_what_the_general_parser_reads() -> None:
    def frame(media: dict[str, object], **top: object) -> str:
        return json.dumps({"event": "media", "streamSid": STREAM, **top, "media": media})

    payload = base64.b64encode(bytes(range(160))).decode()
    cases = [
        TWILIO_MEDIA,
        TWILIO_MEDIA.replace('"inbound"', '"outbound"'),
        TWILIO_MEDIA.replace('"inbound"', '"Inbound"'),  # not a shape Twilio sends: the general way
        TWILIO_MEDIA.replace('"chunk":"2"', '"chunk":"' + "1" * 19 + '"'),  # too long a counter
        TWILIO_MEDIA.replace('"chunk":"2"', '"chunk":"١٢"'),  # digits, but not ASCII ones
        TWILIO_MEDIA.replace('"chunk":"2"', '"chunk":2'),  # an int, not a string
        TWILIO_MEDIA.replace(payload, payload[:-1]),  # broken base64
        TWILIO_MEDIA.replace(payload, payload[:-4] + "AA=="),
        TWILIO_MEDIA.replace(payload, "AA==" + payload[4:]),  # padding inside
        TWILIO_MEDIA.replace(payload, payload.replace("/", "\\/")),  # JSON may escape "/"
        TWILIO_MEDIA.replace(STREAM, "MZ\\u0041"),
        TWILIO_MEDIA + " ",
        TWILIO_MEDIA.replace(",", ", "),
        frame({"payload": payload}),  # counters and track left out
        frame({"payload": payload, "track": "outbound", "chunk": 3}, sequenceNumber=9),
        frame({"payload": 5}),
        TWILIO_MEDIA.replace(payload, "A" * MAX_MESSAGE_BYTES),
    ]
    for case in cases:
        fast, general = _both_ways(case)
        assert fast == general, case


@settings(max_examples=300, deadline=None)
@given(one_character_off(TWILIO_MEDIA, '"{}:,\\ 0aZ/+=_-'))
def test_a_media_frame_off_by_one_character_reads_the_same_either_way(frame: str) -> None:
    fast, general = _both_ways(frame)
    assert fast == general
