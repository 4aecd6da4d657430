"""Who may turn a Media Stream into a call: the checks made before Gemini is ever reached.

Until its ``start`` carries a good token a stream is anyone's: it gets few places, little
time and small frames (docs/security.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from enum import StrEnum

from starlette.websockets import WebSocket

from ..runtime.services import Services
from ..twilio.media_streams import (
    Connected,
    ProtocolError,
    Start,
    UnknownEvent,
    is_valid_sid,
    parse_twilio_event,
)

PRE_START_UNKNOWN_EVENTS = 4  # of a kind this version does not know, ignored
START_TIMEOUT_S = 5.0  # Twilio sends connected + start right after the upgrade
# A 'start' with the webhook's four <Parameter>s (each under 500 characters) is under 3 KB.
PRE_START_MAX_FRAME_BYTES = 8 * 1024

# WebSocket close codes the bridge uses towards Twilio.
CLOSE_NORMAL = 1000
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_INVALID_DATA = 1007
CLOSE_POLICY = 1008
CLOSE_INTERNAL = 1011
CLOSE_TRY_AGAIN = 1013
CLOSE_TOO_BIG = 1009


class Rejection(StrEnum):
    """Why a stream was closed: the ``reason`` label of ``bridge_stream_rejections_total``."""

    UNAUTHENTICATED = "unauthenticated"  # no, bad, expired or spent token; bad signature
    TOO_MANY_UNAUTHENTICATED = "too_many_unauthenticated"  # no place left to wait for 'start'
    PROTOCOL = "protocol"  # a frame that breaks the Media Streams protocol
    FLOOD = "flood"  # too many messages a second
    AUDIO_TOO_FAST = "audio_too_fast"  # audio well ahead of the wall clock
    IDLE = "idle"
    OVER_CAPACITY = "over_capacity"


class StreamRejected(Exception):
    """The stream may not become a call; ``reason`` is logged, ``code`` closes it."""

    def __init__(
        self, reason: str, code: int = CLOSE_POLICY, metric: str = Rejection.UNAUTHENTICATED
    ):
        super().__init__(reason)
        self.reason, self.code, self.metric = reason, code, metric


async def accept_and_authenticate(
    websocket: WebSocket, receive: Callable[[], Awaitable[str | bytes]], services: Services
) -> Start:
    """Accept the upgrade and wait for a good ``start``, holding one of the few places
    for unauthenticated streams meanwhile. With none free the upgrade is refused
    (HTTP 403) before any WebSocket state exists."""
    waiting = services.unauthenticated_streams
    if not waiting.enter():
        raise StreamRejected(
            f"{waiting.limit} streams are already waiting for 'start'",
            CLOSE_TRY_AGAIN,
            Rejection.TOO_MANY_UNAUTHENTICATED,
        )
    try:
        await websocket.accept()
        return await authenticated_start(
            receive, websocket.headers.get("x-twilio-signature"), websocket.url.path, services
        )
    finally:
        waiting.leave()


async def authenticated_start(
    receive: Callable[[], Awaitable[str | bytes]],
    upgrade_signature: str | None,
    path: str,
    services: Services,
) -> Start:
    """Wait for ``start`` and check the stream's token before anything reaches Gemini.

    Twilio does not reliably sign WebSocket upgrades, so the webhook (which it
    does sign) hands the stream a token bound to the call; a signature on the
    upgrade, when there is one, must be valid too.
    """
    if upgrade_signature is not None:
        url = services.signatures.url_for(path, websocket=True)
        if not services.signatures.is_valid(url, {}, upgrade_signature):
            raise StreamRejected("bad X-Twilio-Signature on the WebSocket upgrade")
    try:
        async with asyncio.timeout(START_TIMEOUT_S):
            event = await _first_start(receive)
    except TimeoutError:
        raise StreamRejected(f"no 'start' event within {START_TIMEOUT_S:g} s") from None
    except ProtocolError as exc:
        raise StreamRejected(
            f"malformed frame: {exc}", CLOSE_INVALID_DATA, Rejection.PROTOCOL
        ) from None

    if not is_valid_sid(event.stream_sid, "MZ") or not is_valid_sid(event.call_sid, "CA"):
        raise StreamRejected(
            "start event has malformed stream or call SID", metric=Rejection.PROTOCOL
        )
    params = event.custom_parameters
    if params.get("callSid") != event.call_sid:
        raise StreamRejected("stream parameters belong to another call")
    problem = services.stream_tokens.verify(
        params.get("token", ""), event.call_sid, params.get("from", ""), params.get("to", "")
    )
    if problem:
        raise StreamRejected(problem)
    return event


async def _first_start(receive: Callable[[], Awaitable[str | bytes]]) -> Start:
    """Twilio sends one ``connected``, then ``start``: anything else, or a frame bigger
    than a ``start`` can be, ends the stream before it is parsed any further."""
    connected = False
    unknown = 0
    while True:
        frame = await receive()
        if len(frame) > PRE_START_MAX_FRAME_BYTES:
            raise StreamRejected(
                f"frame of {len(frame)} bytes before 'start' (at most {PRE_START_MAX_FRAME_BYTES})",
                CLOSE_TOO_BIG,
                Rejection.PROTOCOL,
            )
        event = parse_twilio_event(frame)
        if isinstance(event, Start):
            return event
        if isinstance(event, Connected) and not connected:
            connected = True
            continue
        if isinstance(event, UnknownEvent) and unknown < PRE_START_UNKNOWN_EVENTS:
            unknown += 1  # Twilio says to ignore events one does not know; a few, not a flood
            continue
        raise StreamRejected(
            f"'{type(event).__name__.lower()}' event before 'start'",
            CLOSE_INVALID_DATA,
            Rejection.PROTOCOL,
        )
