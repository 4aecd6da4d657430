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
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np
import uvloop
from starlette.websockets import WebSocketDisconnect

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # benchmarks/

from benchmarks.bench_callers import caller_signal
from benchmarks.relay import relay_down, relay_up
from bridge.audio import CallerAudioStream, ModelAudioStream, ulaw_to_pcm16
from bridge.gemini.server import server_content_message
from bridge.testing.in_memory_call import STREAM_SID, GeminiSide, TwilioSide, bridge_call
from bridge.twilio.media_streams import media_event

DISTINCT = 250  # different frames, so the CPU cannot learn one frame's branches


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
