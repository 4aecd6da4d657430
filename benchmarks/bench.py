"""The benchmark: what the bridge adds to a call, measured at the wire, against a bare relay.

Three kinds of process, as in production: the server (``gemini-phone-bridge serve``, or the
bare relay in ``relay.py``), the Gemini emulator in echo mode, and the callers
(``bench_callers.py``). Every timestamp is ``time.monotonic()``, one clock for
all processes on Linux. For caller frame k:

    t0  the frame leaves the caller          t2  its echo leaves the emulator
    t1  it reaches the emulator              t3  the echo reaches the caller

caller → Gemini = t1 − t0, Gemini → caller = t3 − t2 (the emulator's own turnaround
is not the bridge's), each plus the group delay of that direction's resampler,
which holds the newest samples back by that much (exact for linear-phase filters; the
content check confirms the total). Frames are matched by byte count; the audio's
content, unique per call, then shows any frame that is out of place.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gc
import itertools
import json
import multiprocessing
import os
import secrets
import socket
import subprocess
import sys
import time
import timeit
from collections.abc import Generator, Iterator
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.bench_callers import FRAME_BYTES, FRAME_S, CallTrace, caller_signal, run_callers
from benchmarks.loop_stalls import LoopStalls, worst_ms
from bridge.audio import ulaw_to_pcm16
from bridge.audio.resample import Downsampler3x, Upsampler2x
from bridge.testing.served import stop_process

API_KEY = "bench-offline-gemini-key"
RELAY_AUDIO = "relay+audio"  # the bare relay converting the audio as the bridge does
LATE_S = 0.060
PLAYOUT_BUFFER_S = 0.040  # the caller's jitter buffer: audio plays this long after it arrives
WARMUP_FRAMES = 25  # the first 0.5 s of each call is not timed
PCM24K_FRAME_BYTES = 960  # 20 ms of the echo's 24 kHz PCM, which the bare relay passes on
P99_LIMIT_S = 0.020
UP_DELAY_S = Upsampler2x.delay_samples / 16000
DOWN_DELAY_S = Downsampler3x.delay_samples / 24000


# --- the processes ---------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _emulator_main(conn: Connection) -> None:
    from bridge.testing.emulator import EmulatorOptions, GeminiEmulator

    async def main() -> None:
        emulator = await GeminiEmulator(EmulatorOptions(api_key=API_KEY, echo=True)).start()
        stalls = LoopStalls()
        watching = asyncio.create_task(stalls.run())
        conn.send(emulator.url)
        try:
            while (command := await asyncio.to_thread(conn.recv)) != "stop":
                assert command == "collect"
                sessions, emulator.sessions = emulator.sessions, []
                echoes = {s.keypad: (s.echo_in, s.echo_out) for s in sessions if s.keypad}
                conn.send((echoes, stalls.take()))
                del sessions, echoes
                gc.collect()  # between steps, untimed (see _run)
        finally:
            watching.cancel()
            await emulator.stop()

    _run(main())


def _run(coro: Any) -> Any:
    """The load processes use uvloop too when it is there: the lighter the load, the more
    of the shared cores is left to the server being measured.

    And they run without the cyclic garbage collector: with a step's timings held, its
    full passes paused them 20-30 ms, which the figures would count as the server's.
    Their garbage is freed by reference counting; the emulator collects between steps.
    """
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def _callers_main(
    conn: Connection,
    stream_urls: list[str],
    public_urls: list[str | None],
    auth: str,
    calls: int,
    seconds: float,
) -> None:
    async def main() -> tuple[list[CallTrace], list[tuple[float, float]]]:
        started: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        started.add_done_callback(lambda f: conn.send(("start", f.result())))
        stalls = LoopStalls()
        watching = asyncio.create_task(stalls.run())
        try:
            traces = await run_callers(stream_urls, public_urls, auth, calls, seconds, started)
        finally:
            watching.cancel()
        return traces, stalls.take()

    try:
        conn.send(("traces", _run(main())))
    except Exception as exc:  # the orchestrator reports it
        conn.send(("error", repr(exc)))


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc (Linux)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class ServerProcess:
    process: subprocess.Popen[bytes]
    url: str
    public_url: str | None  # the bridge has a webhook; the relay does not

    @property
    def stream_url(self) -> str:
        return self.url.replace("http://", "ws://") + "/voice-stream"

    def cpu_seconds(self) -> float:
        return _cpu_seconds(self.process.pid)

    def rss_bytes(self) -> int:
        with open(f"/proc/{self.process.pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0


@contextlib.contextmanager
def server(
    mode: str, emulator_url: str, auth: str, extra_env: dict[str, str]
) -> Iterator[ServerProcess]:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("GEMINI", "TWILIO", "GOOGLE"))},
        **extra_env,
    }
    if mode == "bridge":
        env.update(
            PUBLIC_URL=url,
            TWILIO_AUTH_TOKEN=auth,
            GEMINI_API_KEY=API_KEY,
            GEMINI_LIVE_URL=emulator_url,
            GREETING="",
            LOG_LEVEL="WARNING",
            LOG_TRANSCRIPTS="false",
            MAX_CONCURRENT_CALLS="100000",
        )
        command = [sys.executable, "-m", "bridge", "serve", "--host", "127.0.0.1"]
    else:
        command = [
            sys.executable,
            "-m",
            "benchmarks.relay",
            "--gemini-url",
            emulator_url,
            "--api-key",
            API_KEY,
            "--host",
            "127.0.0.1",
            *(["--convert-audio"] if mode == RELAY_AUDIO else []),
        ]
    process = subprocess.Popen(
        [*command, "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"{mode} server did not start: "
                        + (process.stderr.read().decode()[-500:] if process.stderr else "")
                    ) from None
                time.sleep(0.05)
        time.sleep(0.3)  # imports settled
        yield ServerProcess(process, url, url if mode == "bridge" else None)
    finally:
        stop_process(process, grace_s=30)


# --- one step: N calls through one kind of server ----------------------------------------------


@dataclass
class Percentiles:
    p50: float
    p95: float
    p99: float
    max: float

    @classmethod
    def of(cls, seconds: np.ndarray) -> Percentiles:
        if not len(seconds):
            return cls(float("nan"), float("nan"), float("nan"), float("nan"))
        p50, p95, p99 = np.percentile(seconds * 1000, [50, 95, 99])
        return cls(
            round(float(p50), 2),
            round(float(p95), 2),
            round(float(p99), 2),
            round(float(seconds.max() * 1000), 2),
        )


@dataclass
class StepResult:
    mode: str  # "bridge" | "relay" | "relay+audio"
    servers: int
    calls: int
    seconds: float
    caller_to_gemini_ms: Percentiles
    gemini_to_caller_ms: Percentiles
    round_trip_ms: Percentiles
    frames_sent: int
    frames_lost: int
    frames_late: int  # round trip over 60 ms
    frames_reordered: int  # content not where it belongs (out of order, or another call's)
    underruns: int  # the caller's playout buffer ran dry
    content_delay_ms: float  # what the content check measured end to end (median lag)
    cpu_s_per_call_minute: float
    rss_idle_mb: float
    rss_per_call_mb: float
    load_cpu_s_per_call_minute: float  # the callers' and the emulator's processes, for context
    load_stall_max_ms: float  # how late the callers' or emulator's event loop ran, at worst
    errors: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.mode + (f"×{self.servers}" if self.servers > 1 else "")

    @property
    def passed(self) -> bool:
        return (
            self.frames_lost == 0
            and not self.errors
            and self.round_trip_ms.p99 < P99_LIMIT_S * 1000
        )


@dataclass
class CallFigures:
    up: np.ndarray
    down: np.ndarray
    lost: int
    reordered: int
    underruns: int
    lag_samples: int | None


def _frame_times(events: list[tuple[float, int]], frame_bytes: int, frames: int) -> np.ndarray:
    """When the last byte of each frame arrived (NaN if it never did)."""
    times = np.full(frames, np.nan)
    if not events:
        return times
    arrived = np.array([t for t, _ in events])
    ends = np.cumsum([n for _, n in events])
    at = np.searchsorted(ends, (np.arange(frames) + 1) * frame_bytes)
    got = at < len(ends)
    times[got] = arrived[at[got]]
    return times


def _content_check(
    call_id: int, frames: int, back: bytes, *, pcm24k: bool = False
) -> tuple[int, int | None]:
    """Frames whose audio is not the caller's own at its place; and the lag in samples.

    ``back`` is μ-law 8 kHz, or with ``pcm24k`` the emulator's 24 kHz PCM that the bare
    relay passes on unconverted (compared at every third sample, where it holds the
    caller's own samples).
    """
    frame_bytes = PCM24K_FRAME_BYTES if pcm24k else FRAME_BYTES
    n = min(frames, len(back) // frame_bytes)
    if n < 10:
        return frames, None
    sent = np.frombuffer(ulaw_to_pcm16(caller_signal(call_id, frames)), "<i2").astype(np.float64)
    if pcm24k:
        got = np.frombuffer(back[: n * frame_bytes], "<i2")[::3].astype(np.float64)
    else:
        got = np.frombuffer(ulaw_to_pcm16(back[: n * frame_bytes]), "<i2").astype(np.float64)
    probe = got[800:4800] if len(got) >= 4800 else got[: len(got) // 2]
    start = 800 if len(got) >= 4800 else 0
    lags = np.arange(0, 200)
    scores = [
        np.dot(probe, sent[start - lag : start - lag + len(probe)]) if start >= lag else 0.0
        for lag in lags
    ]
    lag = int(lags[int(np.argmax(scores))])
    shifted = np.concatenate((np.zeros(lag), sent))[: n * FRAME_BYTES]
    a = got.reshape(n, FRAME_BYTES)[1:]
    b = shifted.reshape(n, FRAME_BYTES)[1:]
    rho = (a * b).sum(1) / np.sqrt((a * a).sum(1) * (b * b).sum(1) + 1e-9)
    return int((rho < 0.8).sum()), lag


def _figures(
    trace: CallTrace, echo: tuple[list[tuple[float, int]], list[float]] | None, mode: str
) -> CallFigures:
    frames = len(trace.sent)
    t0 = np.array(trace.sent)
    converts = mode in ("bridge", RELAY_AUDIO)
    gemini_frame_bytes = 640 if converts else FRAME_BYTES
    up_delay, down_delay = (UP_DELAY_S, DOWN_DELAY_S) if converts else (0.0, 0.0)
    echo_in, echo_out = echo if echo is not None else ([], [])
    t1 = _frame_times(echo_in, gemini_frame_bytes, frames)
    # The echo of message i left at echo_out[i]: map each frame to its message's departure.
    paired = [(t, n) for (_, n), t in zip(echo_in, echo_out, strict=False)]
    t2 = _frame_times(paired, gemini_frame_bytes, frames)
    # The bare relay passes the echo's 24 kHz PCM on as it came.
    t3 = _frame_times(trace.received, FRAME_BYTES if converts else PCM24K_FRAME_BYTES, frames)
    lost = int(np.isnan(t3).sum())
    timed = slice(WARMUP_FRAMES, None)
    up = (t1 - t0 + up_delay)[timed]
    down = (t3 - t2 + down_delay)[timed]
    ok = ~(np.isnan(up) | np.isnan(down))
    underruns = 0
    arrivals = t3[~np.isnan(t3)]
    if len(arrivals):
        due = arrivals[0] + PLAYOUT_BUFFER_S
        for arrival in arrivals[1:]:
            due += FRAME_S
            if arrival > due:
                underruns += 1
                due = arrival  # the player waits for it, then plays on from there
    reordered, lag = _content_check(trace.call_id, frames, trace.audio_back, pcm24k=not converts)
    return CallFigures(up[ok], down[ok], lost, reordered, underruns, lag)


def run_step(
    mode: str,
    calls: int,
    seconds: float,
    emulator: Emulator,
    servers: int = 1,
    extra_env: dict[str, str] | None = None,
    profile: str | None = None,
) -> StepResult:
    auth = "bench-" + secrets.token_hex(8)
    ctx = multiprocessing.get_context("spawn")
    with contextlib.ExitStack() as stack:
        procs = [
            stack.enter_context(server(mode, emulator.url, auth, extra_env or {}))
            for _ in range(servers)
        ]
        rss_idle = sum(p.rss_bytes() for p in procs)
        parent, child = ctx.Pipe()
        load = ctx.Process(
            target=_callers_main,
            args=(
                child,
                [p.stream_url for p in procs],
                [p.public_url for p in procs],
                auth,
                calls,
                seconds,
            ),
        )
        load.start()
        child.close()  # ours closed, a dead child's end closing means EOFError, not a hang
        try:
            kind, value = parent.recv()
            if kind == "error":
                raise RuntimeError(f"callers failed: {value}")
            start = float(value)
            time.sleep(max(0.0, start - time.monotonic()))
            spy = _profiler(procs[0], seconds, profile) if profile else None
            cpu0 = sum(p.cpu_seconds() for p in procs)
            load0 = _cpu_seconds(load.pid or 0) + _cpu_seconds(emulator.pid)
            time.sleep(seconds / 2)
            rss_busy = sum(p.rss_bytes() for p in procs)
            time.sleep(max(0.0, start + seconds - time.monotonic()))
            cpu = sum(p.cpu_seconds() for p in procs) - cpu0
            load_cpu = _cpu_seconds(load.pid or 0) + _cpu_seconds(emulator.pid) - load0
            if spy is not None:
                spy.wait(30)
            kind, value = parent.recv()
            if kind == "error":
                raise RuntimeError(f"callers failed: {value}")
            traces: list[CallTrace] = value[0]
            callers_stalls: list[tuple[float, float]] = value[1]
        finally:
            load.join(30)
            if load.is_alive():
                load.kill()
        emulator.conn.send("collect")
        echoes: dict[str, Any]
        echoes, emulator_stalls = emulator.conn.recv()
    timed = (start + WARMUP_FRAMES * FRAME_S, start + seconds + 0.1)  # the last echoes too

    figures = [_figures(t, echoes.get(f"{t.call_id:04d}"), mode) for t in traces]
    up = np.concatenate([f.up for f in figures]) if figures else np.array([])
    down = np.concatenate([f.down for f in figures]) if figures else np.array([])
    rtt = np.concatenate([f.up + f.down for f in figures]) if figures else np.array([])
    lags = [f.lag_samples for f in figures if f.lag_samples is not None]
    return StepResult(
        mode=mode,
        servers=servers,
        calls=calls,
        seconds=seconds,
        caller_to_gemini_ms=Percentiles.of(up),
        gemini_to_caller_ms=Percentiles.of(down),
        round_trip_ms=Percentiles.of(rtt),
        frames_sent=sum(len(t.sent) for t in traces),
        frames_lost=sum(f.lost for f in figures) + (calls - len(traces)) * int(seconds / FRAME_S),
        frames_late=int((rtt > LATE_S).sum()),
        frames_reordered=sum(f.reordered for f in figures),
        underruns=sum(f.underruns for f in figures),
        content_delay_ms=round(float(np.median(lags)) / 8, 2) if lags else float("nan"),
        cpu_s_per_call_minute=round(cpu / (calls * seconds / 60), 3),
        rss_idle_mb=round(rss_idle / 2**20, 1),
        rss_per_call_mb=round((rss_busy - rss_idle) / calls / 2**20, 3),
        load_cpu_s_per_call_minute=round(load_cpu / (calls * seconds / 60), 3),
        load_stall_max_ms=max(worst_ms(emulator_stalls, *timed), worst_ms(callers_stalls, *timed)),
        errors=sorted({t.error for t in traces if t.error})[:5],
    )


def _profiler(target: ServerProcess, seconds: float, path: str) -> subprocess.Popen[bytes]:
    """py-spy samples the server from outside (no instrumentation in the measured process)."""
    spy = Path(sys.executable).with_name("py-spy")
    return subprocess.Popen(
        [
            str(spy) if spy.exists() else "py-spy",
            "record",
            "--pid",
            str(target.process.pid),
            "--duration",
            str(max(1, int(seconds))),
            "--rate",
            "200",
            "--format",
            "raw",
            "--output",
            path,
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def profile_summary(path: str, top: int = 15) -> list[tuple[str, float, float]]:
    """From py-spy's collapsed stacks: (function, % of samples in it, % in it or below)."""
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    for line in Path(path).read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [
            f.split(" (")[0] + " (" + f.split(" (")[1].split(":")[0].rsplit("/", 1)[-1] + ")"
            if " (" in f
            else f
            for f in stack.split(";")
        ]
        own[frames[-1]] = own.get(frames[-1], 0) + count
        for name in set(frames):
            inclusive[name] = inclusive.get(name, 0) + count
    ranked = sorted(own.items(), key=lambda kv: -kv[1])[:top]
    return [(name, 100 * n / total, 100 * inclusive[name] / total) for name, n in ranked]


@dataclass
class Emulator:
    conn: Connection
    url: str
    pid: int


@contextlib.contextmanager
def emulator_process() -> Iterator[Emulator]:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    process = ctx.Process(target=_emulator_main, args=(child,), daemon=True)
    process.start()
    child.close()
    try:
        url = parent.recv()
        yield Emulator(parent, url, process.pid or 0)
    finally:
        with contextlib.suppress(OSError):
            parent.send("stop")
        process.join(10)
        if process.is_alive():
            process.kill()


# --- the per-frame path, alone -------------------------------------------------------------------


def micro_benchmark(number: int = 2000) -> dict[str, float]:
    """µs per 20 ms frame of the bridge's own work each way, no sockets.

    Each call takes the next of 250 different frames: one frame over and over lets the
    CPU learn its branches, and audioop's μ-law encoder then looks six times faster
    than it is on real audio.
    """
    from bridge.audio import CallerAudioStream, ModelAudioStream
    from bridge.gemini.client import audio_input_message, parse_server_message
    from bridge.gemini.server import server_content_message
    from bridge.twilio.media_streams import media_message, parse_twilio_event

    frames = 250
    ulaw = caller_signal(0, frames)
    stream_sid = "MZ" + "0" * 32
    twilio_frames, gemini_frames = [], []
    for k in range(frames):
        frame = ulaw[k * FRAME_BYTES : (k + 1) * FRAME_BYTES]
        twilio_frames.append(
            '{"event":"media","sequenceNumber":"3","media":{"track":"inbound","chunk":"1",'
            f'"timestamp":"20","payload":"{base64.b64encode(frame).decode()}"}},'
            f'"streamSid":"{stream_sid}"}}'
        )
        pcm24 = np.repeat(np.frombuffer(ulaw_to_pcm16(frame), "<i2"), 3).tobytes()
        gemini_frames.append(server_content_message(audio=pcm24).encode())  # binary, as Gemini
    next_twilio, next_gemini = itertools.cycle(twilio_frames), itertools.cycle(gemini_frames)
    up_stream, down_stream = CallerAudioStream(), ModelAudioStream()

    def up() -> None:
        event = parse_twilio_event(next(next_twilio))
        audio_input_message(up_stream.to_gemini_pcm(event.payload))  # type: ignore[union-attr]

    def down() -> None:
        content = parse_server_message(next(next_gemini)).server_content
        assert content is not None
        media_message(stream_sid, b"".join([down_stream.to_twilio_audio(c) for c in content.audio]))

    def best(fn: Any) -> float:
        return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6

    return {"caller_to_gemini_us": round(best(up), 1), "gemini_to_caller_us": round(best(down), 1)}


# --- the sweep -------------------------------------------------------------------------------


LADDER = (10, 25, 50, 100, 200, 400, 800, 1600)


def _search(ladder: tuple[int, ...], resolution: int = 16) -> Generator[int, bool, int]:
    """Yields the next N to try and is sent whether it passed: up the ladder until a
    step fails, then halve the gap while it is over 1/``resolution`` of the best.
    Returns the best.

    The resolution is finer than the margin the maxima are compared at: at 1/8 the
    grid alone could read a bridge at 84% of the relay as 77% (125 against 162), or
    the other way round, which is as wide as the distance to the 80% line."""
    best, failed = 0, None
    for calls in ladder:
        if (yield calls):
            best = calls
        else:
            failed = calls
            break
    while failed is not None and failed - best > max(5, best // resolution):
        middle = (best + failed) // 2
        if (yield middle):
            best = middle
        else:
            failed = middle
    return best


def sweep(
    runs: list[tuple[str, int]],
    emulator: Emulator,
    seconds: float,
    *,
    ladder: tuple[int, ...] = LADDER,
    tries: int = 2,
    on_step: Any = None,
) -> tuple[list[StepResult], dict[str, int]]:
    """The largest N under the 20 ms p99 rule for each (mode, servers), searched in turn:
    one step of each, then the next of each, so that a slow spell of the shared host
    falls on all of them rather than on whichever happened to be running.

    A step that fails is run again, up to ``tries`` in all, and passes if any try
    does: the host's other work only ever adds latency, so the best try is the
    closer look at what the server sustains (as ``timeit`` keeps its best repeat).
    """
    steps: list[StepResult] = []
    best: dict[str, int] = {}
    searches = {run: _search(ladder) for run in runs}
    pending = {run: next(search) for run, search in searches.items()}
    while pending:
        for (mode, servers), calls in list(pending.items()):
            passed = False
            for _ in range(tries):
                result = run_step(mode, calls, seconds, emulator, servers)
                steps.append(result)
                if on_step:
                    on_step(result)
                if passed := result.passed:
                    break
            try:
                pending[(mode, servers)] = searches[(mode, servers)].send(passed)
            except StopIteration as done:
                del pending[(mode, servers)]
                best[result.name] = done.value
    return steps, best


def cpu_against_relay(steps: list[StepResult]) -> dict[str, dict[int, float]]:
    """Each server's CPU per call-minute over the bare relay's, at the call counts where
    both passed (median of the passing tries): the steadier comparison. The ratio of
    maxima hangs on a few dozen slow frames in one step; this one does not."""

    def passing(name: str) -> dict[int, float]:
        cpu: dict[int, list[float]] = {}
        for step in steps:
            if step.name == name and step.passed:
                cpu.setdefault(step.calls, []).append(step.cpu_s_per_call_minute)
        return {calls: float(np.median(values)) for calls, values in cpu.items()}

    relay = passing("relay")
    ratios: dict[str, dict[int, float]] = {}
    for name in dict.fromkeys(step.name for step in steps if step.name != "relay"):
        own = passing(name)
        common = sorted(set(own) & set(relay))
        if common:
            ratios[name] = {calls: round(own[calls] / relay[calls], 3) for calls in common}
    return ratios


def write_json(path: str, report: dict[str, Any]) -> None:
    with open(path, "w", encoding="utf-8") as out:
        json.dump(
            report,
            out,
            indent=2,
            default=lambda o: asdict(o) if hasattr(o, "__dataclass_fields__") else str(o),
        )


def table(steps: list[StepResult]) -> str:
    head = (
        f"{'server':<10}{'calls':>6}  {'up p50/p99':>12}  {'down p50/p99':>13}  "
        f"{'round trip p50/p95/p99/max (ms)':>32}  {'lost':>5}{'late':>6}{'reord':>6}{'under':>6}"
        f"  {'CPU s/call-min':>14}  {'MB/call':>8}  {'load CPU':>8}  {'load stall':>10}  ok"
    )
    lines = [head]
    for s in steps:
        name = s.name
        r = s.round_trip_ms
        lines.append(
            f"{name:<10}{s.calls:>6}  "
            f"{s.caller_to_gemini_ms.p50:>5.2f}/{s.caller_to_gemini_ms.p99:<6.2f}  "
            f"{s.gemini_to_caller_ms.p50:>5.2f}/{s.gemini_to_caller_ms.p99:<7.2f}  "
            f"{r.p50:>8.2f}/{r.p95:.2f}/{r.p99:.2f}/{r.max:<9.2f}  "
            f"{s.frames_lost:>5}{s.frames_late:>6}{s.frames_reordered:>6}{s.underruns:>6}  "
            f"{s.cpu_s_per_call_minute:>14.3f}  {s.rss_per_call_mb:>8.3f}  "
            f"{s.load_cpu_s_per_call_minute:>8.3f}  {s.load_stall_max_ms:>7.1f} ms  "
            f"{'yes' if s.passed else 'NO'}"
        )
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    import platform

    model = ""
    with (
        contextlib.suppress(OSError),
        open("/proc/cpuinfo", encoding="ascii", errors="replace") as f,
    ):
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
