"""The benchmark's processes: the server under test (or a bare relay), the Gemini emulator
in echo mode, the callers, and py-spy on the server; started and stopped cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import multiprocessing
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from benchmarks.bench_callers import CallTrace, run_callers
from benchmarks.loop_stalls import LoopStalls
from bridge.testing.served import stop_process

API_KEY = "bench-offline-gemini-key"
RELAY_AUDIO = "relay+audio"  # the bare relay converting the audio as the bridge does


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


def callers_main(
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


def cpu_seconds(pid: int) -> float:
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
        return cpu_seconds(self.process.pid)

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


def start_profiler(target: ServerProcess, seconds: float, path: str) -> subprocess.Popen[bytes]:
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
