"""The outside review's attacks at the review's own size, against a real ``bridge serve``:
the figures of docs/security.md.

    .venv/bin/python scripts/measure_attacks.py [--tree DIR] [--json]

Each attack gets a fresh server (``python -m bridge serve`` on loopback, the Gemini
emulator behind it) and reports what it cost the server: its peak resident memory over
its idle size (``VmHWM`` after a reset, from /proc), what it read, what reached Gemini.
``--tree`` runs the server from another checkout, a copy of main say, while the attacks
stay this tree's (tests/security asserts on the same functions, at a smaller size).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

from benchmarks.attacks import chunked_post, compression_burst, fast_audio, idle_streams
from bridge.testing.emulator import EmulatorOptions
from bridge.testing.served import ServedBridge, served_bridge

MiB = 1024 * 1024


def _peak_over_idle(bridge: ServedBridge) -> tuple[float, float]:
    idle = bridge.rss_bytes()
    bridge.reset_peak_memory()
    return idle / MiB, idle


def compression(tree: str | None) -> dict[str, Any]:
    """60 sockets, about 2.6 MB of compressed frames in all (the review's burst)."""
    with served_bridge(pythonpath=tree) as bridge:
        time.sleep(0.5)
        idle_mib, idle = _peak_over_idle(bridge)
        burst = asyncio.run(compression_burst(bridge.port, connections=60, messages=300))
        return {
            "wire_MB": round(burst.wire_bytes / 1e6, 2),
            "inflated_MB": round(burst.inflated_bytes / 1e6),
            "negotiated": burst.negotiated,
            "idle_MiB": round(idle_mib, 1),
            "peak_over_idle_MiB": round((bridge.peak_rss_bytes() - idle) / MiB, 1),
            "close_codes": sorted({str(code) for code in burst.close_codes}),
        }


def chunked(tree: str | None, total_mib: int) -> dict[str, Any]:
    """A forged, chunked webhook of ``total_mib`` (the review sent 879 MiB)."""
    with served_bridge(pythonpath=tree) as bridge:
        time.sleep(0.5)
        _, idle = _peak_over_idle(bridge)
        started = time.monotonic()
        result = asyncio.run(chunked_post(bridge.port, "/api/inbound-call", total_mib * MiB))
        return {
            "sent_MiB": total_mib,
            "status": result.status,
            "body_sent_before_the_answer_MiB": round(result.body_bytes_sent / MiB, 2),
            "peak_over_idle_MiB": round((bridge.peak_rss_bytes() - idle) / MiB, 1),
            "seconds": round(time.monotonic() - started, 2),
        }


def audio(tree: str | None) -> list[dict[str, Any]]:
    """An authenticated stream pushing audio at 140 messages a second (under the flood
    limit) for 5 s: six-second payloads (the review's size), then half-second ones."""
    results = []
    with served_bridge(pythonpath=tree, emulator_options=EmulatorOptions()) as bridge:
        for payload in (48_000, 4_000):
            sessions = len(bridge.emulator.sessions)
            result = asyncio.run(
                fast_audio(bridge.caller(), payload_bytes=payload, messages_per_s=140, seconds=5)
            )
            time.sleep(1.5)  # what was sent reaches the emulator
            heard = sum(len(s.audio_in) for s in bridge.emulator.sessions[sessions:]) / 32000
            results.append(
                {
                    "payload_bytes": payload,
                    "close_code": result.close_code,
                    "close_reason": result.close_reason,
                    "seconds": round(result.elapsed_s, 2),
                    "audio_sent_s": round(result.audio_sent_s, 1),
                    "gemini_heard_s": round(heard, 1),
                    "times_real_time": round(heard / result.elapsed_s, 1),
                }
            )
    return results


def idle(tree: str | None, count: int = 3000) -> dict[str, Any]:
    """``count`` upgrades to /voice-stream that never send ``start`` (the review's 3,000)."""
    with served_bridge(pythonpath=tree) as bridge:
        time.sleep(0.5)
        before = bridge.rss_bytes()

        async def attack() -> dict[str, Any]:
            sockets = await idle_streams(bridge.port, count)
            await asyncio.sleep(1)
            held = [ws for ws in sockets if ws.status == 101]
            grown = (bridge.rss_bytes() - before) / MiB
            started = time.monotonic()
            await asyncio.gather(*(ws.close_code(30) for ws in held))
            for ws in sockets:
                ws.close()
            return {
                "attempts": count,
                "held": len(held),
                "refused": count - len(held),
                "rss_growth_MiB": round(grown, 1),
                "held_for_s": round(time.monotonic() - started + 1, 1),
            }

        return asyncio.run(attack())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", help="run the server from this checkout (e.g. a copy of main)")
    parser.add_argument("--chunked-mib", type=int, default=879, help="the forged body's size")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report = {
        "compression_burst": compression(args.tree),
        "chunked_webhook": chunked(args.tree, args.chunked_mib),
        "fast_audio": audio(args.tree),
        "idle_unauthenticated": idle(args.tree),
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    for name, figures in report.items():
        print(f"== {name}")
        for row in figures if isinstance(figures, list) else [figures]:
            print("   " + ", ".join(f"{k} {v}" for k, v in row.items()))


if __name__ == "__main__":
    main()
