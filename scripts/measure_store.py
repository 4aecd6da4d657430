#!/usr/bin/env python3
"""What the shared store costs: Redis commands per call, and per server while idle.

Runs a fleet of real servers over a real Redis (``bridge.testing.fleet``), places calls
that each ask a few questions, and reads Redis's own command counts (``INFO
commandstats``) before and after. The figures go to docs/scaling.md.

    .venv/bin/python scripts/measure_store.py --calls 10 --questions 4
    .venv/bin/python scripts/measure_store.py --calls 10 --questions 4 --reports

``--reports`` adds CALL_REPORT_URL (a receiver in this process that answers 204): what
a report costs in Redis, and how long after its call it is delivered.

``--keyspace N`` first fills Redis with N ``answered:`` keys (a day of a large fleet's
calls holds millions) and times the fleet's ``/api/calls/stats`` against it, and says
whether the answer still shows every server and whether a server took Redis for down:

    .venv/bin/python scripts/measure_store.py --calls 0 --idle 2 --keyspace 1000000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import statistics
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis

from bridge.testing.caller import SimulatedCaller
from bridge.testing.emulator import EmulatorOptions
from bridge.testing.fleet import ServedFleet
from bridge.testing.speech import load_speech

QUESTION = load_speech("caller_barge_in.wav")


def commands(url: str) -> dict[str, int]:
    stats = redis.Redis.from_url(url).info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


# The conditional write and a server's stats are Lua scripts (EVALSHA); Redis counts the
# commands they run inside too. The bridge sends none of these itself: not round trips.
IN_SCRIPT = frozenset({"exists", "hget", "hset", "pexpire", "time", "pttl", "zremrangebyscore"})


def round_trips(counts: dict[str, int]) -> int:
    """Commands, less those run inside a script. A server's stats (one EVALSHA) also run a
    SET and a ZADD, which are round trips of their own elsewhere: taken off once each."""
    publishes = counts.get("zremrangebyscore", 0)
    return sum(v for k, v in counts.items() if k not in IN_SCRIPT) - 2 * publishes


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    out = {k: v - before.get(k, 0) for k, v in after.items()}
    return {k: v for k, v in sorted(out.items()) if v and k not in ("info",)}


async def call(fleet: ServedFleet, questions: int) -> SimulatedCaller:
    caller = fleet.caller()
    async with caller.dial():
        for _ in range(questions):
            await caller.say(QUESTION)
            await caller.wait_for_answer(timeout=30)
            await caller.wait_until_quiet(quiet_s=0.6, timeout=30)
    return caller


def fill(url: str, keys: int, prefix: str = "gemini-phone-bridge:answered:") -> None:
    """``keys`` keys like the webhook's, 24 h each, in pipelines of 10,000."""
    client = redis.Redis.from_url(url)
    for start in range(0, keys, 10_000):
        pipe = client.pipeline(transaction=False)
        for _ in range(min(10_000, keys - start)):
            pipe.set(prefix + "CA" + secrets.token_hex(16), b"1", ex=86_400)
        pipe.execute()


def time_fleet_stats(fleet: ServedFleet, servers: int, tries: int = 9) -> None:
    """How long the fleet view takes, and whether it is whole, with this keyspace."""
    member = fleet.member(0)
    took, whole = [], 0
    for _ in range(tries):
        started = time.monotonic()
        answer = member.request("GET", "/api/calls/stats", timeout=30)
        took.append(time.monotonic() - started)
        assert answer.status == 200, answer.status
        whole += len(json.loads(answer.body)["instances"]) == servers
        time.sleep(0.5)
    keys = redis.Redis.from_url(fleet.redis.url).dbsize()
    degraded = sum("shared state store unreachable" in m.log() for m in fleet.members if m)
    print(
        f"/api/calls/stats over {keys:,} keys: median {statistics.median(took) * 1000:.1f} ms, "
        f"worst {max(took) * 1000:.1f} ms; every server shown in {whole} of {tries}; "
        f"servers that took Redis for down: {degraded} of {servers}"
    )


class Receiver(BaseHTTPRequestHandler):
    """Takes every report at once, noting when it came."""

    arrivals: ClassVar[list[float]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        Receiver.arrivals.append(time.monotonic())
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--questions", type=int, default=4)
    parser.add_argument("--servers", type=int, default=2)
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of an idle fleet")
    parser.add_argument("--reports", action="store_true", help="with CALL_REPORT_URL")
    parser.add_argument("--keyspace", type=int, default=0, help="answered: keys to add first")
    args = parser.parse_args()
    options = EmulatorOptions(reply_seconds=1.5)
    settings = {"GEMINI_PREWARM": "false"}
    if args.reports:
        receiver = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
        threading.Thread(target=receiver.serve_forever, daemon=True).start()
        settings["CALL_REPORT_URL"] = f"http://127.0.0.1:{receiver.server_port}/report"
        settings["WEBHOOK_SECRET"] = "measure-store-" + "s3" * 10
    with ServedFleet(args.servers, settings, options) as fleet:
        url = fleet.redis.url
        if args.keyspace:
            fill(url, args.keyspace)
            time.sleep(2.5)  # every server has published its stats since
            time_fleet_stats(fleet, args.servers)
        time.sleep(1.0)
        before = commands(url)
        time.sleep(args.idle)
        idle = delta(commands(url), before)
        per_server_s = round_trips(idle) / args.idle / args.servers
        print(f"idle: {per_server_s:.1f} round trips per server per second {idle}")

        async def calls() -> list[SimulatedCaller]:
            return await asyncio.gather(*(call(fleet, args.questions) for _ in range(args.calls)))

        before = commands(url)
        started = time.monotonic()
        callers = asyncio.run(calls())
        if args.reports:
            deadline = time.monotonic() + 30
            while len(Receiver.arrivals) < args.calls and time.monotonic() < deadline:
                time.sleep(0.05)
            ends = sorted(c.result.ended_at or c.result.streams[-1].closed_at or 0 for c in callers)
            after = [a - e for a, e in zip(sorted(Receiver.arrivals), ends, strict=False)]
            print(
                f"reports: {len(Receiver.arrivals)} of {args.calls}; hang-up to delivery median "
                f"{statistics.median(after) * 1000:.0f} ms, worst {max(after) * 1000:.0f} ms"
            )
        elapsed = time.monotonic() - started
        busy = delta(commands(url), before)
        background = per_server_s * args.servers * elapsed
        per_call = (round_trips(busy) - background) / args.calls
        minutes = (
            sum(
                (c.result.streams[-1].closed_at or time.monotonic())
                - c.result.streams[0].started_at
                for c in callers
            )
            / 60
        )
        print(
            f"{args.calls} calls × {args.questions} questions in {elapsed:.1f} s "
            f"({minutes / args.calls * 60:.1f} s each): {busy}"
        )
        used = redis.Redis.from_url(url).info("memory")["used_memory_human"]
        print(
            f"per call: {per_call:.1f} round trips beyond the servers' own "
            f"({per_call / (minutes / args.calls):.1f} per call-minute); "
            f"memory used by Redis now: {used}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
