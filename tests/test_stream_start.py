"""Before ``start``: one ``connected``, then ``start``, in small frames, within seconds."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

import pytest

import bridge.call.stream_start
from bridge.call.admission import UnauthenticatedStreams
from bridge.call.stream_start import (
    PRE_START_MAX_FRAME_BYTES,
    Rejection,
    StreamRejected,
    authenticated_start,
)
from bridge.config import load_settings
from bridge.gemini.endpoint import endpoint_from_settings
from bridge.runtime.services import Services
from bridge.twilio.media_streams import connected_event, media_event, start_event

ENV = {
    "PUBLIC_URL": "https://b.example.com",
    "TWILIO_AUTH_TOKEN": "twilio-auth-token-123",
    "GEMINI_API_KEY": "gemini-key-for-tests",
}
CALL, STREAM = "CA" + "1" * 32, "MZ" + "2" * 32


def services() -> Services:
    settings = load_settings(ENV, env_file=None)
    return Services.build(settings, endpoint_from_settings(settings))


def frames(*items: str | bytes) -> Callable[[], Awaitable[str | bytes]]:
    queue = list(items)

    async def receive() -> str | bytes:
        if not queue:
            await asyncio.sleep(3600)
        return queue.pop(0)

    return receive


def start(services: Services, **parameters: str) -> str:
    token = services.stream_tokens.mint(CALL, "+1415", "+1800")
    params = {"callSid": CALL, "from": "+1415", "to": "+1800", "token": token, **parameters}
    return start_event(
        stream_sid=STREAM, call_sid=CALL, account_sid="AC" + "0" * 32, custom_parameters=params
    )


def rejection(receive: Callable[[], Awaitable[str | bytes]], s: Services) -> StreamRejected:
    with pytest.raises(StreamRejected) as info:
        asyncio.run(authenticated_start(receive, None, "/voice-stream", s))
    return info.value


def test_connected_then_start_with_a_good_token_starts_the_call() -> None:
    s = services()
    event = asyncio.run(authenticated_start(frames(connected_event(), start(s)), None, "/", s))
    assert event.call_sid == CALL


def test_start_may_come_without_connected() -> None:
    s = services()
    assert asyncio.run(authenticated_start(frames(start(s)), None, "/", s)).stream_sid == STREAM


def test_a_frame_bigger_than_any_start_is_refused_before_it_is_parsed() -> None:
    s = services()
    huge = json.dumps({"event": "connected", "pad": "x" * PRE_START_MAX_FRAME_BYTES})
    refused = rejection(frames(huge, start(s)), s)
    assert refused.code == 1009 and refused.metric == Rejection.PROTOCOL


def test_only_one_connected_and_nothing_else_before_start() -> None:
    s = services()
    twice = rejection(frames(connected_event(), connected_event(), start(s)), s)
    assert twice.code == 1007 and "'connected' event before 'start'" in twice.reason
    media = media_event(stream_sid=STREAM, sequence_number=1, chunk=1, timestamp_ms=0, ulaw=b"")
    early = rejection(frames(media, start(s)), s)
    assert early.code == 1007 and "'media' event before 'start'" in early.reason


def test_no_start_in_time_is_a_1008(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bridge.call.stream_start, "START_TIMEOUT_S", 0.05)
    s = services()
    late = rejection(frames(connected_event()), s)
    assert late.code == 1008 and late.metric == Rejection.UNAUTHENTICATED


def test_a_bad_token_is_a_1008_counted_as_unauthenticated() -> None:
    s = services()
    bad = rejection(frames(start(s, token="1.é")), s)
    assert bad.code == 1008 and bad.reason == "malformed stream token"
    assert bad.metric == Rejection.UNAUTHENTICATED


def test_unauthenticated_streams_take_places_up_to_the_limit() -> None:
    waiting = UnauthenticatedStreams(limit=2)
    assert waiting.enter() and waiting.enter()
    assert not waiting.enter() and waiting.waiting == 2
    waiting.leave()
    assert waiting.enter() and not waiting.enter()
