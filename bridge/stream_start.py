"""Who may turn a Media Stream into a call: the checks made before Gemini is ever reached."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from .services import Services
from .twilio.media_streams import (
    Connected,
    ProtocolError,
    Start,
    UnknownEvent,
    is_valid_sid,
    parse_twilio_event,
)

START_TIMEOUT_S = 10.0  # Twilio sends connected + start right after the upgrade

# WebSocket close codes the bridge uses towards Twilio.
CLOSE_NORMAL = 1000
CLOSE_INVALID_DATA = 1007
CLOSE_POLICY = 1008
CLOSE_INTERNAL = 1011
CLOSE_TRY_AGAIN = 1013
CLOSE_TOO_BIG = 1009


class StreamRejected(Exception):
    """The stream may not become a call; ``reason`` is logged, ``code`` closes it."""

    def __init__(self, reason: str, code: int = CLOSE_POLICY, metric: str = "unauthenticated"):
        super().__init__(reason)
        self.reason, self.code, self.metric = reason, code, metric


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
            while True:
                event = parse_twilio_event(await receive())
                if isinstance(event, Connected | UnknownEvent):
                    continue  # Twilio says to ignore events one does not know
                if isinstance(event, Start):
                    break
                raise StreamRejected(
                    f"'{type(event).__name__.lower()}' event before 'start'",
                    CLOSE_INVALID_DATA,
                    "protocol",
                )
    except TimeoutError:
        raise StreamRejected(f"no 'start' event within {START_TIMEOUT_S:g} s") from None
    except ProtocolError as exc:
        raise StreamRejected(f"malformed frame: {exc}", CLOSE_INVALID_DATA, "protocol") from None

    if not is_valid_sid(event.stream_sid, "MZ") or not is_valid_sid(event.call_sid, "CA"):
        raise StreamRejected("start event has malformed stream or call SID", metric="protocol")
    params = event.custom_parameters
    if params.get("callSid") != event.call_sid:
        raise StreamRejected("stream parameters belong to another call")
    problem = services.stream_tokens.verify(
        params.get("token", ""), event.call_sid, params.get("from", ""), params.get("to", "")
    )
    if problem:
        raise StreamRejected(problem)
    return event
