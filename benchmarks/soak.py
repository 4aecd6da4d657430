"""The soak: many calls, long calls, faults every few seconds; what did callers lose?

The server runs as its own process (``python -m bridge serve``), exactly as in
production; the Gemini emulator and the simulated callers run here. Two loads
at once:

* ``short_calls`` short calls, one after another in ``lanes`` parallel lanes:
  the caller says a few words, hears the answer, hangs up;
* ``long_calls`` long calls that keep asking questions for ``long_seconds``,
  while a fault (goAway, close 1011, a silent stall) hits a random Gemini
  session every ``fault_every_s``.

With ``rounds`` > 1 the whole load runs again, so memory that grows from one
round to the next (a leak) shows apart from the allocator's high-water mark.

It reports calls completed, questions left unanswered, answers cut short by a
fault, calls that *lost audio* (the caller heard silence for more than 1 s in
the middle of an answer that then went on), and the server's asyncio tasks and
RSS before and after.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import itertools
import json
import os
import random
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from typing import Any

from bridge.audio import ModelAudioStream
from bridge.testing.call_result import FRAME_S, CallResult
from bridge.testing.caller import SimulatedCaller
from bridge.testing.emulator import EmulatorOptions, GeminiEmulator, bundled_reply
from bridge.testing.speech import VOICED_RMS, frame_rms, load_speech

REPLY_SECONDS = 1.5
LOST_GAP_S = 1.0


@dataclass
class SoakReport:
    short_calls: int = 0
    short_completed: int = 0
    long_calls: int = 0
    long_completed: int = 0
    questions: int = 0
    unanswered: int = 0
    answers_cut_by_faults: int = 0
    calls_lost_audio: int = 0
    faults_injected: dict[str, int] = field(default_factory=dict)
    gemini_connections: int = 0
    server_tasks_idle_before: int = 0
    server_tasks_idle_after: int = 0
    server_rss_mb_before: float = 0.0  # idle, after a warm-up at full concurrency
    server_rss_mb_after_round: list[float] = field(default_factory=list)  # idle, after each
    server_rss_mb_after: float = 0.0
    server_rss_mb_peak: float = 0.0
    duration_s: float = 0.0
    failures: list[str] = field(default_factory=list)

    def as_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


@contextlib.asynccontextmanager
async def server_process(emulator: GeminiEmulator, auth_token: str) -> AsyncIterator[str]:
    port = _free_port()
    env = {
        **{
            k: v
            for k, v in os.environ.items()
            if not k.startswith(tuple(f"{vendor}_" for vendor in ("GEMINI", "TWILIO", "GOOGLE")))
        },
        "PUBLIC_URL": f"http://127.0.0.1:{port}",
        "TWILIO_AUTH_TOKEN": auth_token,
        "GEMINI_API_KEY": "soak-offline-gemini-key",
        "GEMINI_LIVE_URL": emulator.url,
        "GEMINI_STALL_TIMEOUT": "2",
        "GREETING": "",  # the callers speak first; greetings are tested on their own
        "LOG_LEVEL": "WARNING",
    }
    process = subprocess.Popen(  # noqa: ASYNC220 (starting it does not block)
        [sys.executable, "-m", "bridge", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                await asyncio.to_thread(_get, url + "/health")
                break
            except OSError:
                await asyncio.sleep(0.05)
        yield url
    finally:
        process.terminate()
        try:
            await asyncio.to_thread(process.wait, 30)
        except subprocess.TimeoutExpired:
            process.kill()


def _expected_voiced_frames() -> int:
    reply = bundled_reply()[: int(REPLY_SECONDS * 24000) * 2]
    stream = ModelAudioStream()
    frames = stream.to_twilio_frames(reply) + stream.flush()
    return sum(1 for f in frames if frame_rms(f) > VOICED_RMS)


def _answers(result: CallResult) -> list[list[float]]:
    """Voiced frames the caller heard, grouped per answer: after each utterance ends,
    until the next one starts."""
    groups: list[list[float]] = []
    utterances = result.utterances
    for i, utterance in enumerate(utterances):
        until = utterances[i + 1].sent_from if i + 1 < len(utterances) else float("inf")
        lo = bisect.bisect_right(result.heard_voiced_at, utterance.voiced_until)
        hi = bisect.bisect_left(result.heard_voiced_at, until)
        groups.append(result.heard_voiced_at[lo:hi])
    return groups


def _judge(result: CallResult, expected: int, report: SoakReport) -> bool:
    """Count cut answers; True when the caller lost audio mid-answer."""
    lost = False
    for heard in _answers(result):
        if not heard:
            continue
        gaps = [b - a for a, b in itertools.pairwise(heard)]
        if any(g > LOST_GAP_S for g in gaps):
            lost = True
        if len(heard) < 0.8 * expected:
            report.answers_cut_by_faults += 1
    return lost


async def _short_lane(
    url: str, token: str, calls: int, hi: bytes, expected: int, report: SoakReport
) -> None:
    for _ in range(calls):
        caller = SimulatedCaller(url, token)
        report.short_calls += 1
        try:
            async with caller.dial() as call:
                await call.say(hi)
                report.questions += 1
                try:
                    await call.wait_for_answer(timeout=12)
                except (TimeoutError, ConnectionError):
                    report.unanswered += 1
                    continue
                await call.wait_until_quiet(quiet_s=0.3, timeout=20)
        except Exception as exc:  # one call's failure is a finding, not the end of the soak
            report.failures.append(f"short: {exc.__class__.__name__}: {exc}"[:200])
            continue
        if caller.result.close_code == 1000 and not caller.result.protocol_errors:
            report.short_completed += 1
        if _judge(caller.result, expected, report):
            report.calls_lost_audio += 1


async def _long_call(
    url: str, token: str, seconds: float, question: bytes, expected: int, report: SoakReport
) -> None:
    caller = SimulatedCaller(url, token)
    report.long_calls += 1
    ends = time.monotonic() + seconds
    try:
        async with caller.dial() as call:
            while time.monotonic() < ends:
                await call.say(question)
                report.questions += 1
                try:
                    await call.wait_for_answer(timeout=12)
                    await call.wait_until_quiet(quiet_s=0.5, timeout=20)
                except (TimeoutError, ConnectionError):
                    report.unanswered += 1
                await asyncio.sleep(random.uniform(0.5, 1.5))
    except Exception as exc:
        report.failures.append(f"long: {exc.__class__.__name__}: {exc}"[:200])
        return
    if caller.result.close_code == 1000 and not caller.result.protocol_errors:
        report.long_completed += 1
    if _judge(caller.result, expected, report):
        report.calls_lost_audio += 1


async def _inject_faults(
    emulator: GeminiEmulator, every_s: float, report: SoakReport, seed: int
) -> None:
    rng = random.Random(seed)
    kinds = ["go_away", "close", "stall"]
    i = 0
    while True:
        await asyncio.sleep(every_s)
        kind = kinds[i % len(kinds)]
        if await emulator.inject_fault(kind, rng):
            report.faults_injected[kind] = report.faults_injected.get(kind, 0) + 1
            i += 1


def _server_process_stats(url: str) -> tuple[int, float]:
    stats = _get(url + "/api/calls/stats")["process"]
    return stats["asyncio_tasks"], (stats["rss_bytes"] or 0) / 1e6


async def run_soak(
    short_calls: int = 1000,
    lanes: int = 20,
    long_calls: int = 20,
    long_seconds: float = 120.0,
    fault_every_s: float = 3.0,
    seed: int = 1,
    rounds: int = 1,
) -> SoakReport:
    report = SoakReport()
    started = time.monotonic()
    token = "soak-twilio-auth-token"
    hi = load_speech("caller_barge_in.wav")[: 8000 * 1]  # about a second of speech
    question = load_speech("caller_barge_in.wav")
    expected = _expected_voiced_frames()
    options = EmulatorOptions(api_key=None, reply_seconds=REPLY_SECONDS)
    async with GeminiEmulator(options) as emulator, server_process(emulator, token) as url:
        # Warm up at full concurrency (imports, allocator arenas grown to their working
        # size), so the baseline is the idle server after a load like the soak's.
        warmup = SoakReport()
        await asyncio.gather(
            *(_short_lane(url, token, 2, hi, expected, warmup) for _ in range(lanes + long_calls))
        )
        await asyncio.sleep(2)
        report.server_tasks_idle_before, report.server_rss_mb_before = await asyncio.to_thread(
            _server_process_stats, url
        )
        per_lane = [
            short_calls // lanes + (1 if i < short_calls % lanes else 0) for i in range(lanes)
        ]
        faults = asyncio.create_task(_inject_faults(emulator, fault_every_s, report, seed))
        peak = asyncio.create_task(_track_peak(url, report))
        try:
            for _ in range(rounds):
                await asyncio.gather(
                    *(_short_lane(url, token, n, hi, expected, report) for n in per_lane),
                    *(
                        _long_call(url, token, long_seconds, question, expected, report)
                        for _ in range(long_calls)
                    ),
                )
                await asyncio.sleep(2)  # let the server finish its last calls' bookkeeping
                tasks, rss = await asyncio.to_thread(_server_process_stats, url)
                report.server_rss_mb_after_round.append(round(rss, 1))
        finally:
            for task in (faults, peak):
                task.cancel()
            await asyncio.gather(faults, peak, return_exceptions=True)
        report.server_tasks_idle_after, report.server_rss_mb_after = tasks, rss
        report.gemini_connections = len(emulator.sessions)
    report.duration_s = round(time.monotonic() - started, 1)
    return report


async def _track_peak(url: str, report: SoakReport) -> None:
    while True:
        _, rss = await asyncio.to_thread(_server_process_stats, url)
        report.server_rss_mb_peak = max(report.server_rss_mb_peak, rss)
        await asyncio.sleep(FRAME_S * 100)
