"""What the bridge's own code costs per 20 ms round trip, against the benchmark's relays.

    .venv/bin/python scripts/measure_pumps.py [--calls 1] [--frames 20000]

The benchmark's CPU figures carry the whole stack (uvicorn, websockets, the kernel)
and the shared host's noise, which hide a microsecond here or there. This times only
what differs between the servers: a whole ``CallBridge`` (its link, session, parsers,
audio and per-frame features), built as the server builds it, and the bare relay's and
relay+audio's pumps, fed the benchmark's own frames (Twilio's media events up, the
emulator's echo down) through stand-ins for the two sockets that hand over the next
message after one turn of the event loop (uvloop, as in the server). A call is timed
each way on its own: up (the caller's frames, Gemini silent) and down (Gemini's echoes,
the caller silent). ``--calls`` runs that many at once, round-robin, as a busy server does.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable, Generator, Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import uvloop
from starlette.websockets import WebSocketDisconnect, WebSocketState
from websockets.exceptions import ConnectionClosed

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # benchmarks/

from benchmarks.bench_callers import caller_signal
from benchmarks.relay import relay_down, relay_up
from bridge.audio import CallerAudioStream, ModelAudioStream, ulaw_to_pcm16
from bridge.call.bridge import CallBridge
from bridge.call.personas import Persona, Personas
from bridge.call.plan import CallPlanner
from bridge.call.registry import CallRegistry
from bridge.call.resources import CallGuards, CallResources
from bridge.call.stream_auth import StreamAuthenticator
from bridge.gemini.endpoint import ApiKeyAuth, GeminiEndpoint
from bridge.gemini.link_policy import LinkPolicy
from bridge.gemini.server import server_content_message, setup_complete_message
from bridge.gemini.session import GeminiSession
from bridge.gemini.wire import SessionConfig
from bridge.observability.metrics import BridgeMetrics
from bridge.twilio.media_streams import connected_event, media_event, start_event
from bridge.twilio.security import SignatureCheck, StreamTokens

CALL_SID = "CA" + "0" * 32
STREAM_SID = "MZ" + "0" * 32
SECRET = "measure-pumps-secret-0123456789"
DISTINCT = 250  # different frames, so the CPU cannot learn one frame's branches


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


def frames(count: int) -> tuple[list[str], list[bytes]]:
    """Twilio's media events and the emulator's echoes of them, as the benchmark sends."""
    ulaw = caller_signal(0, DISTINCT)
    chunks = [ulaw[k * 160 : (k + 1) * 160] for k in range(DISTINCT)]
    echoes = [
        server_content_message(
            audio=np.repeat(np.frombuffer(ulaw_to_pcm16(chunk), "<i2"), 3).tobytes()
        ).encode()
        for chunk in chunks
    ]
    up = [
        media_event(
            stream_sid=STREAM_SID,
            sequence_number=k + 2,
            chunk=k + 1,
            timestamp_ms=20 * k,
            ulaw=chunks[k % DISTINCT],
        )
        for k in range(count)
    ]
    return up, [echoes[k % DISTINCT] for k in range(count)]


# One set of metrics for every call, as in the server: a registry per call would be timed
# as part of each pump and make the bridge look dearer the fewer frames each pump has.
METRICS = BridgeMetrics()
ENDPOINT = GeminiEndpoint("ws://gemini", "models/m", ApiKeyAuth("key"), "ai_studio")


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
    return CallResources(
        planner=planner,
        registry=CallRegistry(None, METRICS),
        authenticator=StreamAuthenticator(SignatureCheck(SECRET, "https://measure"), tokens),
        open_session=open_session,
        metrics=METRICS,
        rest=None,
        prewarm=None,
        setup_timeout_s=5,
        tool_timeout_s=5,
        link_policy=LinkPolicy(),
        goodbye_instruction="",
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


Pump = Callable[[list[str], list[bytes]], Awaitable[object]]


def _relay_pumps(convert: bool) -> tuple[Pump, Pump]:
    def up(frames: list[str], echoes: list[bytes]) -> Awaitable[object]:
        to_gemini = CallerAudioStream() if convert else None
        gemini = GeminiSide(iter([]), setup=False)
        return relay_up(TwilioSide(iter(frames)), gemini, to_gemini)  # type: ignore[arg-type]

    def down(frames: list[str], echoes: list[bytes]) -> Awaitable[object]:
        to_caller = ModelAudioStream() if convert else None
        gemini = GeminiSide(iter(echoes), setup=False)  # the relays read no setupComplete
        return relay_down(TwilioSide(iter([])), gemini, STREAM_SID, to_caller)  # type: ignore[arg-type]

    return up, down


PUMPS: dict[str, tuple[Pump, Pump]] = {
    "bridge": (
        lambda frames, echoes: bridge_call(frames, [])[0].run(),
        lambda frames, echoes: bridge_call([], echoes)[0].run(),
    ),
    "relay+audio": _relay_pumps(convert=True),
    "relay": _relay_pumps(convert=False),
}


def measure(calls: int, count: int, repeats: int = 3) -> dict[str, dict[str, float]]:
    """µs per frame each way, best of ``repeats``, for each kind of server."""
    up, down = frames(count)

    async def timed(pump: Pump) -> float:
        started = time.perf_counter()
        results = await asyncio.gather(
            *(pump(up, down) for _ in range(calls)), return_exceptions=True
        )
        elapsed = time.perf_counter() - started
        errors = [
            r
            for r in results
            if isinstance(r, BaseException) and not isinstance(r, WebSocketDisconnect)
        ]
        if errors:
            raise errors[0]
        return elapsed / (calls * count) * 1e6

    report = {}
    for name, (up_pump, down_pump) in PUMPS.items():
        ups = [uvloop.run(timed(up_pump)) for _ in range(repeats)]
        downs = [uvloop.run(timed(down_pump)) for _ in range(repeats)]
        report[name] = {
            "up_us": min(ups),
            "down_us": min(downs),
            "round_trip_us": min(ups) + min(downs),
        }
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1, help="pumps of each kind at once")
    parser.add_argument("--frames", type=int, default=20000, help="frames per pump")
    args = parser.parse_args()
    report = measure(args.calls, args.frames)
    relay = report["relay"]["round_trip_us"]
    print(f"µs per 20 ms frame, {args.calls} call(s) at once, {args.frames} frames each")
    print(f"{'server':12s} {'up':>6s} {'down':>6s} {'round trip':>11s}  over the relay")
    for name, figures in report.items():
        print(
            f"{name:12s} {figures['up_us']:6.2f} {figures['down_us']:6.2f} "
            f"{figures['round_trip_us']:11.2f}  +{figures['round_trip_us'] - relay:.2f}"
        )


if __name__ == "__main__":
    main()
