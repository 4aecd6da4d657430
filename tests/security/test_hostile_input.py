"""Property-based: no input makes the parsers or the audio path misbehave."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.audio import TWILIO_FRAME_BYTES, CallerAudioStream, ModelAudioStream
from bridge.gemini.client import parse_server_message
from bridge.gemini.wire import GeminiProtocolError
from bridge.twilio.media_streams import ProtocolError, TwilioEvent, parse_twilio_event

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
EVENTS = ["connected", "start", "media", "mark", "dtmf", "stop", "bogus"]


def twilio_like() -> st.SearchStrategy[str]:
    """Frames shaped like Twilio's, with any value anywhere."""
    return st.builds(
        lambda event, body, extra: json.dumps(
            {"event": event, "streamSid": extra, event: body, "sequenceNumber": extra}
        ),
        st.sampled_from(EVENTS),
        json_values,
        json_values,
    )


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=200), st.binary(max_size=200), twilio_like()))
def test_twilio_parser_returns_an_event_or_raises_protocol_error(frame: str | bytes) -> None:
    try:
        event = parse_twilio_event(frame)
    except ProtocolError as exc:
        assert str(exc)  # a reason to log
        return
    assert isinstance(event, TwilioEvent.__args__)  # type: ignore[attr-defined]


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=200), st.binary(max_size=200), json_values.map(json.dumps)))
def test_gemini_parser_returns_a_message_or_raises_its_error(frame: str | bytes) -> None:
    try:
        parse_server_message(frame)
    except GeminiProtocolError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=700), max_size=20))
def test_caller_audio_of_any_bytes_gives_twice_the_samples(frames: list[bytes]) -> None:
    stream = CallerAudioStream()
    for frame in frames:
        assert len(stream.to_gemini_pcm(frame)) == 4 * len(frame)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=3001), max_size=20))
def test_model_audio_of_any_chunks_gives_exact_frames_and_keeps_every_sample(
    chunks: list[bytes],
) -> None:
    stream = ModelAudioStream()
    frames = [f for chunk in chunks for f in stream.to_twilio_frames(chunk)]
    assert all(len(f) == TWILIO_FRAME_BYTES for f in frames)
    total_samples = sum(len(c) for c in chunks) // 2
    out = len(frames) * TWILIO_FRAME_BYTES + stream.pending_bytes
    assert abs(out - total_samples / 3) <= 1
    frames = stream.flush()
    assert all(len(f) == TWILIO_FRAME_BYTES for f in frames) and stream.pending_bytes == 0
