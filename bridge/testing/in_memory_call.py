"""A call as the server builds it, on in-memory stand-ins for its two sockets.

``bridge_call(up, down)`` gives a ``CallBridge`` whose Twilio side hands over ``up`` (media
events, after a good ``connected`` and ``start``) and whose Gemini side answers the setup
and then hands over ``down``; each read costs one turn of the event loop, the cheapest a
socket read can be. The measuring script times the bridge's own code on it, and tests
assert on what reaches each side, without a socket or a private attribute.
"""

from __future__ import annotations

import asyncio
from collections.abc import Generator, Iterator
from typing import Any, ClassVar

from starlette.websockets import WebSocketDisconnect, WebSocketState
from websockets.exceptions import ConnectionClosed

from ..call.bridge import CallBridge
from ..call.fleet import FleetCalls
from ..call.ledger import CallLedger
from ..call.personas import Persona, Personas
from ..call.plan import CallPlanner
from ..call.registry import CallRegistry
from ..call.resources import CallGuards, CallResources
from ..call.stream_auth import StreamAuthenticator
from ..gemini.endpoint import ApiKeyAuth, Backend, GeminiEndpoint
from ..gemini.link_policy import LinkPolicy
from ..gemini.server import setup_complete_message
from ..gemini.session import GeminiSession
from ..gemini.wire import SessionConfig
from ..hooks.outbox import ReportOutbox
from ..observability.metrics import BridgeMetrics
from ..state import MemoryStore
from ..twilio.media_streams import connected_event, start_event
from ..twilio.security import SignatureCheck, StreamTokens

CALL_SID = "CA" + "0" * 32
STREAM_SID = "MZ" + "0" * 32
SECRET = "in-memory-call-secret-0123456789"


class _OneTurn:
    """Awaiting it gives the event loop one turn: what the cheapest socket read costs."""

    def __await__(self) -> Generator[None, None, None]:
        yield


ONE_TURN = _OneTurn()


class _Url:
    path = "/voice-stream"


class TwilioSide:
    """Starlette's ``WebSocket`` as the bridge uses it, over a list of frames; after them,
    it hangs up once ``hang_up_after`` is set (the other direction is done)."""

    url = _Url()
    headers: ClassVar[dict[str, str]] = {}

    def __init__(self, frames: Iterator[str], hang_up_after: asyncio.Event | None = None):
        self._frames = frames
        self._hang_up_after = hang_up_after
        self.sent = 0
        self.application_state = WebSocketState.CONNECTING

    async def accept(self) -> None:
        self.application_state = WebSocketState.CONNECTED

    async def receive(self) -> dict[str, Any]:
        await ONE_TURN
        for frame in self._frames:
            return {"type": "websocket.receive", "text": frame}
        if self._hang_up_after is not None:
            await self._hang_up_after.wait()
        return {"type": "websocket.disconnect", "code": 1000}

    async def receive_text(self) -> str:
        message = await self.receive()
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message["code"])
        return str(message["text"])

    async def send_text(self, text: str) -> None:
        self.sent += 1

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self.application_state = WebSocketState.DISCONNECTED


class _Transport:
    def abort(self) -> None:
        pass


class GeminiSide:
    """websockets' ``ClientConnection`` as the bridge and the relays use it, over a list of
    messages (``setupComplete`` first, for the bridge's session). After them: with ``done``
    it sets it and stays silent, as a live connection with nothing to say; without, it
    closes, which ends a relay."""

    close_code, close_reason = 1000, ""
    transport = _Transport()

    def __init__(
        self, messages: Iterator[bytes], done: asyncio.Event | None = None, *, setup: bool = True
    ) -> None:
        self._messages = messages
        self._done = done
        self._setup = setup
        self.sent = 0

    async def send(self, message: str) -> None:
        self.sent += 1

    async def recv(self) -> bytes:
        await ONE_TURN
        if self._setup:
            self._setup = False
            return setup_complete_message("measure").encode()
        for message in self._messages:
            return message
        if self._done is None:
            raise ConnectionClosed(None, None)
        self._done.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    def __aiter__(self) -> GeminiSide:
        return self

    async def __anext__(self) -> bytes:
        try:
            return await self.recv()
        except ConnectionClosed:
            raise StopAsyncIteration from None

    async def close(self) -> None:
        pass


# One set of metrics for every call, as in the server: a registry per call would be timed
# as part of each pump and make the bridge look dearer the fewer frames each pump has.
METRICS = BridgeMetrics()
ENDPOINT = GeminiEndpoint("ws://gemini", "models/m", ApiKeyAuth("key"), Backend.AI_STUDIO)


def resources(gemini: GeminiSide) -> CallResources:
    """What the server gives a call, with Gemini's socket replaced by ``gemini``."""
    tokens = StreamTokens(SECRET)

    async def stand_in(*args: object, **kwargs: object) -> GeminiSide:
        return gemini

    async def open_session(config: SessionConfig, setup_timeout: float) -> GeminiSession:
        session = GeminiSession(ENDPOINT, config, setup_timeout=setup_timeout, ws_connect=stand_in)  # type: ignore[arg-type]
        await session.open()
        return session

    planner = CallPlanner(
        Personas(Persona("", "Kore", "", None), {}),
        [],
        model_resource="models/m",
        builtin_tools=frozenset(),
        can_change_calls=False,
        transfer_numbers=(),
        vad=None,
    )
    fleet = FleetCalls(MemoryStore(), "local", max_moves=5)
    return CallResources(
        planner=planner,
        registry=CallRegistry(None, METRICS),
        authenticator=StreamAuthenticator(SignatureCheck(SECRET, "https://measure"), tokens, fleet),
        fleet=fleet,
        open_session=open_session,
        metrics=METRICS,
        rest=None,
        prewarm=None,
        setup_timeout_s=5,
        tool_timeout_s=5,
        link_policy=LinkPolicy(),
        goodbye_instruction="",
        ledger=CallLedger(fleet, ReportOutbox(fleet.store, None, "", 60.0)),
        recording_callback="https://measure/api/recording-status",
        # Frames arrive as fast as the loop turns: limits that never trip, the same work.
        guards=CallGuards(flood_burst=float("inf"), audio_ahead_s=float("inf")),
    )


def opening(tokens: StreamTokens) -> list[str]:
    """What Twilio sends before media: connected, and start with a good token."""
    token = tokens.mint(CALL_SID, "+15550100", "+15550199")
    params = {"callSid": CALL_SID, "from": "+15550100", "to": "+15550199", "token": token}
    start = start_event(
        stream_sid=STREAM_SID, call_sid=CALL_SID, account_sid="AC" + "0" * 32,
        custom_parameters=params,
    )  # fmt: skip
    return [connected_event(), start]


def bridge_call(up: list[str], down: list[bytes]) -> tuple[CallBridge, TwilioSide, GeminiSide]:
    """A call as the server runs it: ``up`` from the caller, ``down`` from Gemini. It ends
    when the caller's frames are spent and, if Gemini has any, once Gemini's are too."""
    done = asyncio.Event()
    gemini = GeminiSide(iter(down), done)
    twilio = TwilioSide(iter([*opening(StreamTokens(SECRET)), *up]), done if down else None)
    return CallBridge(twilio, resources(gemini)), twilio, gemini  # type: ignore[arg-type]
