"""Who may turn a Media Stream into a call: the checks made before Gemini is ever reached.

Twilio does not reliably sign WebSocket upgrades, so the webhook (which it does sign)
hands the stream a token bound to the call, single-use, in a ``<Parameter>``; the
``start`` event must carry it. A signature on the upgrade, when there is one, must be
valid too. Until then a stream is anyone's: it gets one of few places, little time, and
the Twilio stream's rules for what may come before ``start`` (docs/security.md).

A token is spent in the fleet's shared store, so it opens one stream on whichever
server. While that store cannot be reached, only the server that minted a token can
tell whether it was used (it alone takes its tokens then), so a token minted
elsewhere is refused rather than accepted unchecked; the call gets another stream
through its ``<Connect action>`` (docs/scaling.md, "When Redis is away").
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from starlette.websockets import WebSocket

from ..state import Claim
from ..twilio.media_streams import Start, is_valid_sid
from ..twilio.security import SignatureCheck, StreamGrant, StreamTokens
from ..twilio.stream_state import StreamViolation, TwilioStream, Violation
from .fleet import FleetCalls
from .outcome import CloseCode, Rejection, StreamRejected

# How a stream that broke the protocol is closed.
VIOLATION_CLOSE = {
    Violation.MALFORMED: CloseCode.INVALID_DATA,
    Violation.OUT_OF_ORDER: CloseCode.INVALID_DATA,
    Violation.TOO_BIG: CloseCode.TOO_BIG,
    Violation.REPEATED_START: CloseCode.POLICY,
}

START_TIMEOUT_S = 5.0  # Twilio sends connected + start right after the upgrade
# Streams accepted and not yet authenticated, at once. Twilio's wait for 'start' is
# milliseconds, so this many means a burst of calls within the same moment.
MAX_UNAUTHENTICATED_STREAMS = 64


class UnauthenticatedStreams:
    """How many streams are waiting for their ``start`` now, against a limit.

    Each one holds a socket, a task and whatever frames uvicorn has already read for
    it; without a limit an attacker's idle connections add up (docs/security.md).
    """

    def __init__(self, limit: int = MAX_UNAUTHENTICATED_STREAMS) -> None:
        self.limit = limit
        self.waiting = 0

    def enter(self) -> bool:
        if self.waiting >= self.limit:
            return False
        self.waiting += 1
        return True

    def leave(self) -> None:
        self.waiting -= 1


class StreamAuthenticator:
    def __init__(
        self,
        signatures: SignatureCheck,
        tokens: StreamTokens,
        fleet: FleetCalls,
        places: UnauthenticatedStreams | None = None,
        start_timeout_s: float = START_TIMEOUT_S,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._signatures = signatures
        self._tokens = tokens
        self._fleet = fleet
        self._wall = wall_clock
        self.places = places or UnauthenticatedStreams()
        self.start_timeout_s = start_timeout_s

    async def start(
        self,
        websocket: WebSocket,
        receive: Callable[[], Awaitable[str | bytes]],
        stream: TwilioStream,
    ) -> tuple[Start, StreamGrant]:
        """Accept the upgrade and wait for a good ``start``, holding one of the few places
        for unauthenticated streams meanwhile (with none free the upgrade is refused, HTTP
        403, before any WebSocket state exists); its token is spent. Raises
        StreamRejected."""
        self.take_place()
        try:
            await websocket.accept()
            self.check_upgrade(websocket.url.path, websocket.headers.get("x-twilio-signature"))
            try:
                async with asyncio.timeout(self.start_timeout_s):
                    start = None
                    while start is None:
                        start = stream.before_start(await receive())
            except TimeoutError:
                raise StreamRejected(
                    f"no 'start' event within {self.start_timeout_s:g} s"
                ) from None
            except StreamViolation as exc:
                raise StreamRejected(
                    str(exc), VIOLATION_CLOSE[exc.violation], Rejection.PROTOCOL
                ) from None
            grant = self.check_start(start)
            await self.spend(grant)
            return start, grant
        finally:
            self.leave_place()

    def take_place(self) -> None:
        """Before the upgrade is accepted; raises StreamRejected when none is free."""
        if not self.places.enter():
            raise StreamRejected(
                f"{self.places.limit} streams are already waiting for 'start'",
                CloseCode.TRY_AGAIN,
                Rejection.TOO_MANY_UNAUTHENTICATED,
            )

    def leave_place(self) -> None:
        self.places.leave()

    def check_upgrade(self, path: str, signature: str | None) -> None:
        if signature is None:
            return
        url = self._signatures.url_for(path, websocket=True)
        if not self._signatures.is_valid(url, {}, signature):
            raise StreamRejected("bad X-Twilio-Signature on the WebSocket upgrade")

    def check_start(self, start: Start) -> StreamGrant:
        """The ``start`` belongs to the call its token was minted for."""
        if not is_valid_sid(start.stream_sid, "MZ") or not is_valid_sid(start.call_sid, "CA"):
            raise StreamRejected(
                "start event has malformed stream or call SID", rejection=Rejection.PROTOCOL
            )
        params = start.custom_parameters
        if params.get("callSid") != start.call_sid:
            raise StreamRejected("stream parameters belong to another call")
        grant = self._tokens.check(
            params.get("token", ""), start.call_sid, params.get("from", ""), params.get("to", "")
        )
        if isinstance(grant, str):
            raise StreamRejected(grant)
        return grant

    async def spend(self, grant: StreamGrant) -> None:
        """A token opens one stream, fleet-wide."""
        ttl = max(1.0, grant.expiry - self._wall() + 1)
        claim = await self._fleet.claim_token(grant.key, ttl)
        if claim is Claim.TAKEN:
            raise StreamRejected("stream token already used")
        if claim is Claim.FIRST_HERE and grant.minted_by != self._fleet.instance:
            raise StreamRejected(
                "a stream token minted by another instance cannot be checked while the shared "
                "store is unreachable",
                CloseCode.TRY_AGAIN,
                Rejection.UNCHECKABLE,
            )
