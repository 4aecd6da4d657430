"""What the bridge's own code costs per 20 ms round trip, against the benchmark's relays.

    .venv/bin/python scripts/measure_pumps.py [--calls 1] [--frames 20000]

The benchmark's CPU figures carry the whole stack (uvicorn, websockets, the kernel)
and the shared host's noise, which hide a microsecond here or there. This times only
what differs between the servers: the bridge's two pumps (``CallBridge`` with its link,
session, parsers, audio and per-frame features) and the bare relay's and relay+audio's,
fed the benchmark's own frames (Twilio's media events up, the emulator's echo down)
through stand-ins for the two sockets that hand over the next message after one turn
of the event loop (uvloop, as in the server). ``--calls`` runs that many pumps of each
kind at once, round-robin, as a busy server does.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import time
import types
from collections.abc import Awaitable, Callable, Generator, Iterator
from typing import Any

import numpy as np
import uvloop
from starlette.websockets import WebSocketDisconnect
from websockets.exceptions import ConnectionClosed

from benchmarks.bench_callers import caller_signal
from benchmarks.relay import relay_down, relay_up
from bridge.audio import CallerAudioStream, ModelAudioStream, ulaw_to_pcm16
from bridge.call.audio_pace import AudioPace
from bridge.call.bridge import FLOOD_BURST, FLOOD_RATE, CallBridge
from bridge.call.rate_limit import TokenBucket
from bridge.call.registry import CallRecord
from bridge.gemini.endpoint import ApiKeyAuth, GeminiEndpoint
from bridge.gemini.link import GeminiLink
from bridge.gemini.protocol import SessionConfig, server_content_message
from bridge.gemini.session import GeminiSession
from bridge.observability.metrics import BridgeMetrics
from bridge.twilio.media_streams import media_event

STREAM_SID = "MZ" + "0" * 32
DISTINCT = 250  # different frames, so the CPU cannot learn one frame's branches


class _OneTurn:
    """Awaiting it gives the event loop one turn: what the cheapest socket read costs."""

    def __await__(self) -> Generator[None, None, None]:
        yield


ONE_TURN = _OneTurn()


class TwilioSide:
    """Starlette's ``WebSocket`` as the pumps use it, over a list of frames."""

    def __init__(self, frames: Iterator[str]) -> None:
        self._frames = frames
        self.sent = 0

    async def receive(self) -> dict[str, Any]:
        await ONE_TURN
        for frame in self._frames:
            return {"type": "websocket.receive", "text": frame}
        return {"type": "websocket.disconnect", "code": 1000}

    async def receive_text(self) -> str:
        message = await self.receive()
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message["code"])
        return message["text"]

    async def send_text(self, text: str) -> None:
        self.sent += 1


class GeminiSide:
    """websockets' ``ClientConnection`` as the pumps use it, over a list of messages."""

    close_code, close_reason = 1000, ""

    def __init__(self, messages: Iterator[bytes]) -> None:
        self._messages = messages
        self.sent = 0

    async def send(self, message: str) -> None:
        self.sent += 1

    async def recv(self) -> bytes:
        await ONE_TURN
        for message in self._messages:
            return message
        raise ConnectionClosed(None, None)

    def __aiter__(self) -> GeminiSide:
        return self

    async def __anext__(self) -> bytes:
        try:
            return await self.recv()
        except ConnectionClosed:
            raise StopAsyncIteration from None


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
SERVICES = types.SimpleNamespace(metrics=BridgeMetrics())


def bridge_pumps(up: list[str], down: list[bytes]) -> CallBridge:
    """A call as ``CallBridge.run`` leaves it once Gemini is open (no supervisor task)."""
    call = CallBridge(TwilioSide(iter(up)), SERVICES)  # type: ignore[arg-type]
    call._stream_sid = STREAM_SID
    call._record = CallRecord("CA" + "0" * 32, STREAM_SID, "+1555")
    # Frames arrive here as fast as the loop turns: a clock that moves 20 ms per frame
    # keeps the flood limit from tripping while it still does its work.
    call._rate = TokenBucket(FLOOD_RATE, FLOOD_BURST, clock=itertools.count(0, 0.02).__next__)
    # The audio pace, likewise, must not trip: its per-frame work is all the same (its
    # clock is read about once per 10 s of audio, never here).
    call._pace = AudioPace(float("inf"))
    endpoint = GeminiEndpoint("ws://gemini", "models/m", ApiKeyAuth("k"), "ai_studio")
    config = SessionConfig(model="models/m", voice="Kore", system_prompt="")
    link = GeminiLink(
        endpoint, config, setup_timeout=1, turns=call._turns, transcript=call.transcript
    )
    session = GeminiSession(endpoint, config)
    session._ws = GeminiSide(iter(down))  # type: ignore[assignment]
    session.state = "open"
    link._session = session
    link._closed = True  # the end of the messages ends the pump, no reconnect
    call._link = link
    return call


Pump = Callable[[list[str], list[bytes]], Awaitable[object]]


def _relay_pumps(convert: bool) -> tuple[Pump, Pump]:
    def up(frames: list[str], echoes: list[bytes]) -> Awaitable[object]:
        to_gemini = CallerAudioStream() if convert else None
        return relay_up(TwilioSide(iter(frames)), GeminiSide(iter([])), to_gemini)  # type: ignore[arg-type]

    def down(frames: list[str], echoes: list[bytes]) -> Awaitable[object]:
        to_caller = ModelAudioStream() if convert else None
        twilio, gemini = TwilioSide(iter([])), GeminiSide(iter(echoes))
        return relay_down(twilio, gemini, STREAM_SID, to_caller)  # type: ignore[arg-type]

    return up, down


PUMPS: dict[str, tuple[Pump, Pump]] = {
    "bridge": (
        lambda frames, echoes: bridge_pumps(frames, [])._caller_to_gemini(),
        lambda frames, echoes: bridge_pumps([], echoes)._gemini_to_caller(),
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
