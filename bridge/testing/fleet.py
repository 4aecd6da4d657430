"""A fleet on loopback: several real ``gemini-phone-bridge serve`` processes sharing one
Redis, behind one load balancer, with the Gemini emulator behind them all.

It is what a Kubernetes deployment is, in one machine: each server is its own process
(SIGTERM drains it, SIGKILL kills it), ``PUBLIC_URL`` is the balancer's, so Twilio's
signatures and the simulated caller's requests go wherever the balancer sends them, and
a server taken out of rotation (as a terminating pod leaves its Service) gets nothing new.
"""

from __future__ import annotations

import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .balancer import TcpBalancer
from .caller import SimulatedCaller
from .emulator import EmulatorOptions
from .redis_server import RedisServer
from .served import (
    EmulatorThread,
    ServedBridge,
    bridge_environment,
    free_port,
    serve_command,
    wait_until_healthy,
)


class ServedFleet:
    def __init__(
        self,
        size: int,
        settings: Mapping[str, str] | None = None,
        emulator_options: EmulatorOptions | None = None,
    ) -> None:
        self.size = size
        self._settings = dict(settings or {})
        self._options = emulator_options or EmulatorOptions()
        self.redis = RedisServer()
        self.members: list[ServedBridge | None] = [None] * size
        self._workdir = tempfile.TemporaryDirectory(prefix="bridge-fleet-")
        self._starts = 0
        self.gemini: EmulatorThread | None = None
        self.balancer: TcpBalancer | None = None
        self.env: dict[str, str] = {}

    # --- the fleet's life -----------------------------------------------------------------------

    def __enter__(self) -> ServedFleet:
        try:
            self.redis.start()
            self.gemini = EmulatorThread(self._options)
            self.balancer = self.gemini.call(TcpBalancer().start())
            self.env = bridge_environment(
                self.gemini.emulator,
                self.balancer.port,
                STATE_URL=self.redis.url,
                **self._settings,
            )
            for index in range(self.size):
                self.start(index)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for index, member in enumerate(self.members):
            if member is not None and member.alive():
                self.stop(index)
        if self.gemini is not None:
            if self.balancer is not None:
                self.gemini.call(self.balancer.stop())
            self.gemini.close()
        self.redis.stop()
        self._workdir.cleanup()

    # --- its members ----------------------------------------------------------------------------

    def start(self, index: int) -> ServedBridge:
        """Start server ``index`` (again) on a new port, and put it in rotation."""
        assert self.gemini is not None and self.balancer is not None
        self._starts += 1
        port = free_port()
        # Unbuffered: a server killed mid-test leaves its whole log.
        env = {**self.env, "INSTANCE_NAME": f"web-{index}-{self._starts}", "PYTHONUNBUFFERED": "1"}
        log_path = Path(self._workdir.name) / f"web-{index}-{self._starts}.log"
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                serve_command(port),
                env=env,
                cwd=self._workdir.name,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        member = ServedBridge(process, port, env, log_path, self.gemini)
        wait_until_healthy(member)
        self.members[index] = member
        self.balancer.backends.append(port)
        return member

    def out_of_rotation(self, index: int) -> None:
        """Nothing new reaches server ``index`` (a terminating pod leaves its Service)."""
        member = self.members[index]
        assert self.balancer is not None and member is not None
        if member.port in self.balancer.backends:
            self.balancer.backends.remove(member.port)

    def back_in_rotation(self, index: int) -> None:
        member = self.members[index]
        assert self.balancer is not None and member is not None
        if member.port not in self.balancer.backends:
            self.balancer.backends.append(member.port)

    def stop(self, index: int, timeout_s: float = 60) -> float:
        """SIGTERM server ``index`` (out of rotation first) and wait for it to exit, as a
        rolling update does; returns how long it took."""
        member = self.members[index]
        assert member is not None
        self.out_of_rotation(index)
        started = time.monotonic()
        member.process.send_signal(signal.SIGTERM)
        try:
            member.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            member.process.kill()
            member.process.wait()
            member.stopped()
            raise AssertionError(
                f"server {index} did not drain within {timeout_s:g} s; its log ends:\n"
                f"{member.last_log}"
            ) from None
        member.stopped()
        return time.monotonic() - started

    def kill(self, index: int) -> None:
        """SIGKILL server ``index``: a crash, an OOM kill, a lost node. The balancer finds
        out as a Service does, when connecting to it fails."""
        member = self.members[index]
        assert member is not None
        member.process.kill()
        member.process.wait()
        member.stopped()

    # --- calling it -----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self.balancer is not None
        return self.balancer.url

    def caller(self, **kwargs: Any) -> SimulatedCaller:
        return SimulatedCaller(self.url, self.env["TWILIO_AUTH_TOKEN"], **kwargs)

    def member(self, index: int) -> ServedBridge:
        member = self.members[index]
        assert member is not None
        return member

    def logs(self) -> str:
        return "\n".join(
            p.read_text(errors="replace") for p in Path(self._workdir.name).glob("*.log")
        )
