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

import contextlib
import multiprocessing
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from benchmarks.bench_callers import FRAME_BYTES, FRAME_S, CallTrace, caller_signal
from benchmarks.loop_stalls import worst_ms
from benchmarks.processes import (
    RELAY_AUDIO,
    Emulator,
    callers_main,
    cpu_seconds,
    server,
    start_profiler,
)
from bridge.audio import ulaw_to_pcm16
from bridge.audio.resample import Downsampler3x, Upsampler2x

LATE_S = 0.060
PLAYOUT_BUFFER_S = 0.040  # the caller's jitter buffer: audio plays this long after it arrives
WARMUP_FRAMES = 25  # the first 0.5 s of each call is not timed
PCM24K_FRAME_BYTES = 960  # 20 ms of the echo's 24 kHz PCM, which the bare relay passes on
P99_LIMIT_S = 0.020
UP_DELAY_S = Upsampler2x.delay_samples / 16000
DOWN_DELAY_S = Downsampler3x.delay_samples / 24000


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
            target=callers_main,
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
            spy = start_profiler(procs[0], seconds, profile) if profile else None
            cpu0 = sum(p.cpu_seconds() for p in procs)
            load0 = cpu_seconds(load.pid or 0) + cpu_seconds(emulator.pid)
            time.sleep(seconds / 2)
            rss_busy = sum(p.rss_bytes() for p in procs)
            time.sleep(max(0.0, start + seconds - time.monotonic()))
            cpu = sum(p.cpu_seconds() for p in procs) - cpu0
            load_cpu = cpu_seconds(load.pid or 0) + cpu_seconds(emulator.pid) - load0
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
