"""``gemini-phone-bridge serve`` as its own process, the Gemini emulator behind it: what an outside
reviewer attacks (``tests/security``, ``scripts/measure_attacks.py``).

The server is started exactly as in production (``python -m bridge serve``) with
settings in its environment, on loopback. The emulator runs on an event loop of its
own in a thread of this process, so a test module can share one server and one
emulator while each test runs its own loop, and still read what the emulator heard.
The server's memory is read from ``/proc``: its resident size now, and its peak since
``reset_peak_memory()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import os
import re
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Coroutine, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from .caller import SimulatedCaller
from .emulator import EmulatorOptions, GeminiEmulator

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent.parent
START_TIMEOUT_S = 20.0
GEMINI_CHECKED = "Gemini check ("  # the start-up check's log line, whatever it found
LOG_TAIL_CHARS = 6000  # of each server's log, shown beside a failed test
# Every server started in this process, newest last: a failed test shows their logs.
_STARTED: list[ServedBridge] = []


class EmulatorThread:
    """A ``GeminiEmulator`` on its own event loop, in a thread."""

    def __init__(self, options: EmulatorOptions) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="emulator")
        self._thread.start()
        self.emulator = self.call(GeminiEmulator(options).start())

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 10) -> T:
        """Run ``coro`` on the emulator's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def close(self) -> None:
        try:
            self.call(self.emulator.stop())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()


def stop_process(process: subprocess.Popen[Any], grace_s: float) -> None:
    """SIGTERM (the server drains), then SIGKILL if it is not gone after ``grace_s``."""
    process.terminate()
    try:
        process.wait(grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve_command(port: int, host: str = "127.0.0.1") -> list[str]:
    """``gemini-phone-bridge serve`` on ``host:port``, run from this interpreter."""
    return [sys.executable, "-m", "bridge", "serve", "--host", host, "--port", str(port)]


@dataclass
class Response:
    status: int
    headers: dict[str, str]  # lower-cased names
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode(errors="replace")


@dataclass
class ServedBridge:
    process: subprocess.Popen[bytes]
    port: int
    env: dict[str, str]
    log_path: Path
    gemini: EmulatorThread
    # When it was stopped, and its log's end then (its directory is removed after).
    stopped_at: float | None = None
    last_log: str = ""

    def __post_init__(self) -> None:
        _STARTED.append(self)

    def stopped(self) -> None:
        """Keep the end of the log before its directory goes."""
        self.stopped_at = time.monotonic()
        with contextlib.suppress(OSError):
            self.last_log = self.log()[-LOG_TAIL_CHARS:]

    @property
    def emulator(self) -> GeminiEmulator:
        return self.gemini.emulator

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def auth_token(self) -> str:
        return self.env["TWILIO_AUTH_TOKEN"]

    def caller(self, **kwargs: Any) -> SimulatedCaller:
        """A simulated Twilio caller whose webhook this server accepts."""
        return SimulatedCaller(self.url, self.auth_token, **kwargs)

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def log_once_it_shows(self, text: str, timeout: float = 5) -> str:
        """The log, as soon as ``text`` is in it (the server writes as calls end)."""
        deadline = time.monotonic() + timeout
        while text not in (log := self.log()):
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not in the log within {timeout:g} s")
            time.sleep(0.05)
        return log

    def _status(self, field: str) -> int:
        text = Path(f"/proc/{self.process.pid}/status").read_text()
        match = re.search(rf"^{field}:\s+(\d+) kB", text, re.M)
        assert match is not None, field
        return int(match.group(1)) * 1024

    def rss_bytes(self) -> int:
        return self._status("VmRSS")

    def peak_rss_bytes(self) -> int:
        """The most resident memory since the last ``reset_peak_memory()``."""
        return self._status("VmHWM")

    def reset_peak_memory(self) -> None:
        Path(f"/proc/{self.process.pid}/clear_refs").write_text("5")  # resets VmHWM

    def request(
        self,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        timeout: float = 10,
    ) -> Response:
        """One HTTP request; ``headers`` may replace ``Host``."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request(method, path, body=body, headers=dict(headers or {}))
            answer = connection.getresponse()
            return Response(
                answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read()
            )
        finally:
            connection.close()

    def metric(self, sample: str) -> float:
        """One sample of /metrics, e.g. ``bridge_stream_rejections_total{reason="flood"}``;
        0 when absent."""
        token = self.env.get("OPERATOR_TOKEN")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = self.request("GET", "/metrics", headers=headers)
        assert response.status == 200, response.text
        for line in response.text.splitlines():
            name, _, value = line.rpartition(" ")
            if name == sample:
                return float(value)
        return 0.0

    def metric_once_settled(self, sample: str, expected: float, timeout: float = 5) -> float:
        """``metric(sample)`` once it equals ``expected``, or as it is after ``timeout``: a
        call's figures are counted as it ends, which may be just after its socket closed."""
        deadline = time.monotonic() + timeout
        while (value := self.metric(sample)) != expected and time.monotonic() < deadline:
            time.sleep(0.05)
        return value

    def alive(self) -> bool:
        return self.process.poll() is None


def bridge_environment(emulator: GeminiEmulator, port: int, **settings: str) -> dict[str, str]:
    """The server's environment: this one without any bridge settings, then strong
    secrets, the emulator as Gemini, and ``settings`` over them."""
    own = (
        "GEMINI_", "TWILIO_", "GOOGLE_", "PUBLIC_", "OPERATOR_", "DEV_", "LOG_", "TOOLS_",
        "STATE_", "INSTANCE_", "MAX_CALL_",
    )  # fmt: skip
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(own)},
        "PUBLIC_URL": f"http://127.0.0.1:{port}",
        "TWILIO_AUTH_TOKEN": "auth-" + secrets.token_hex(16),
        "GEMINI_API_KEY": emulator.options.api_key or "gemini-" + secrets.token_hex(16),
        "GEMINI_LIVE_URL": emulator.url,
        "TWIML_DIR": str(ROOT / "twiml"),
        "GREETING": "",
        "DRAIN_TIMEOUT": "1",
        **settings,
    }


@contextlib.contextmanager
def served_bridge(
    settings: Mapping[str, str] | None = None,
    emulator_options: EmulatorOptions | None = None,
    *,
    pythonpath: str | None = None,
) -> Iterator[ServedBridge]:
    """Start the emulator and ``python -m bridge serve`` on loopback; stop both after.

    ``pythonpath`` (default: ``$SECURITY_SERVER_TREE``) runs the server from another
    tree, a copy of main say, while this process keeps its own code and attacks.
    """
    pythonpath = pythonpath or os.environ.get("SECURITY_SERVER_TREE")
    options = emulator_options or EmulatorOptions()
    if options.api_key is not None:
        options.api_key = "gemini-" + secrets.token_hex(16)
    emulator = EmulatorThread(options)
    port = free_port()
    env = bridge_environment(emulator.emulator, port, **dict(settings or {}))
    if pythonpath is not None:
        env["PYTHONPATH"] = pythonpath
    workdir = tempfile.TemporaryDirectory(prefix="bridge-served-")
    log_path = Path(workdir.name) / "server.log"
    try:
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                serve_command(port),
                env=env,
                cwd=workdir.name,  # no .env here
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        served = ServedBridge(process, port, env, log_path, emulator)
        try:
            wait_until_healthy(served)
            yield served
        finally:
            stop_process(process, grace_s=15)
            served.stopped()
    finally:
        emulator.close()
        workdir.cleanup()


def start_refusal(
    settings: Mapping[str, str], *, host: str = "127.0.0.1", timeout: float = 20
) -> tuple[int | None, str]:
    """Run ``gemini-phone-bridge serve`` with only ``settings`` (and
    ``$SECURITY_SERVER_TREE``), for a start-up that should be refused: its exit code and
    what it printed. The code is None if it served instead (stopped after ``timeout``)."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **settings}
    if tree := os.environ.get("SECURITY_SERVER_TREE"):
        env["PYTHONPATH"] = tree
    port = str(free_port())
    with tempfile.TemporaryDirectory(prefix="bridge-refused-") as workdir:
        process = subprocess.Popen(
            serve_command(int(port), host),
            env=env,
            cwd=workdir,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            output, _ = process.communicate(timeout=timeout)
            return process.returncode, output
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
            return None, output


def log_tails(since: float, most: int = 3) -> list[tuple[str, str]]:
    """(label, end of log) of the last servers that ran after ``since`` (monotonic): what a
    failed test shows, since each server ran in a process of its own and its log goes
    with its temporary directory."""
    tails: list[tuple[str, str]] = []
    for served in reversed(_STARTED):
        if len(tails) == most:
            break
        if served.stopped_at is not None and served.stopped_at < since:
            continue
        if served.stopped_at is None:
            try:
                text = served.log()[-LOG_TAIL_CHARS:]
            except OSError:
                continue
        else:
            text = served.last_log
        code = served.process.poll()
        state = "running" if code is None else f"exited {code}"
        tails.append((f"server :{served.port} ({state})", text))
    return tails


def wait_until_healthy(served: ServedBridge) -> None:
    """Until ``/health`` answers and the start-up Gemini check is done. That check opens a
    session of its own just after the server starts serving; a test counting the
    emulator's sessions must not take it for its call's (CI saw that, once)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    healthy = False
    checked = served.env.get("LOG_LEVEL", "INFO").upper() == "ERROR"  # then it is not logged
    while True:
        try:
            healthy = healthy or served.request("GET", "/health", timeout=1).status == 200
        except OSError:
            pass
        checked = checked or (healthy and GEMINI_CHECKED in served.log())
        if healthy and checked:
            return
        if not served.alive() or time.monotonic() > deadline:
            raise RuntimeError(f"gemini-phone-bridge serve did not start:\n{served.log()[-3000:]}")
        time.sleep(0.05)
