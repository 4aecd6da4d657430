"""uvicorn, taught to drain: on SIGTERM the calls end first, then the sockets close.

uvicorn closes every WebSocket with 1012 the moment its own shutdown starts,
which would cut every caller off mid-sentence. So the first SIGTERM (or
SIGINT) only starts draining (``/ready`` turns 503, new calls get the busy
answer, running calls get up to DRAIN_TIMEOUT, then a spoken goodbye); uvicorn's
shutdown begins once that is done. More SIGTERMs are ignored (Kubernetes sends
one after the preStop hook); a second Ctrl-C shuts down at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import socket
from collections.abc import Awaitable, Callable, Iterator
from types import FrameType
from typing import Any

import uvicorn

log = logging.getLogger(__name__)

AFTER_DRAIN_GRACE_S = 1.0  # let Twilio's last requests (status, fallback) reach us
WS_MAX_BYTES = 128 * 1024  # Twilio's frames are ~400 bytes; the parser caps them at 64 KiB


def uvicorn_config(app: object, **options: Any) -> uvicorn.Config:
    """The one uvicorn configuration of the bridge (``gemini-phone-bridge serve``, the test harness,
    the benchmark's relays), so that what the tests attack is what is deployed.

    No permessage-deflate: Twilio never asks for it, and uvicorn inflates every frame it
    has read before the app sees the first one, token check or not, so a few MB of
    compressed frames became a GB of queued messages (docs/security.md). A frame over
    ``WS_MAX_BYTES`` closes its socket with 1009.
    """
    settings: dict[str, Any] = {
        "log_config": None,
        "ws": "websockets-sansio",
        "ws_max_size": WS_MAX_BYTES,
        "ws_per_message_deflate": False,
        "lifespan": "on",  # the app's background work starts and stops with it
        **options,
    }
    return uvicorn.Config(app, **settings)  # type: ignore[arg-type]


class DrainingServer(uvicorn.Server):
    def __init__(
        self,
        config: uvicorn.Config,
        drain: Callable[[], Awaitable[None]],
        *,
        freeze_startup_objects: bool = True,
    ) -> None:
        super().__init__(config)
        self._drain = drain
        self._freeze = freeze_startup_objects  # off in tests: a test process is not a server
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain_task: asyncio.Task[None] | None = None
        self._signal: int | None = None
        self.stopped_by: str | None = None  # the signal whose stop was carried out, drained

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self._freeze:
            # What is loaded by now (modules, the app, settings) lives as long as the
            # process. Out of the collector's way: its full passes over it took 20-35 ms
            # with ~90 calls up, and every call's audio waits that long.
            gc.collect()
            gc.freeze()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """uvicorn raises the stop signal again on its way out, so a Ctrl-C ends in a
        KeyboardInterrupt traceback. A stop carried out by draining is done: nothing to raise.
        (A second Ctrl-C, which skips the drain, is still raised: exit status 130.)"""
        with super().capture_signals():
            yield
            if self.stopped_by is not None:
                self._captured_signals.clear()

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        try:
            await super().serve(sockets)
        finally:
            if self._drain_task is not None and not self._drain_task.done():
                self._drain_task.cancel()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._drain_task is not None and sig == signal.SIGTERM:
            # Kubernetes sends SIGTERM again after a preStop hook that already sent one.
            log.info("already draining; SIGTERM ignored (Ctrl-C twice stops at once)")
            return
        if self._drain_task is not None or self._loop is None or self.should_exit:
            log.warning("second shutdown signal: closing now")
            super().handle_exit(sig, frame)
            return
        self._signal = sig
        self._loop.call_soon_threadsafe(self.start_drain)

    def start_drain(self) -> None:
        """Begin draining (also for tests and pre-stop hooks); idempotent."""
        if self._drain_task is None:
            self._drain_task = asyncio.get_running_loop().create_task(self._drain_then_exit())

    async def _drain_then_exit(self) -> None:
        try:
            await self._drain()
            await asyncio.sleep(AFTER_DRAIN_GRACE_S)
        except Exception:
            log.exception("draining failed; shutting down anyway")
        finally:
            if self._signal is not None:
                self.stopped_by = signal.Signals(self._signal).name
                super().handle_exit(self._signal, None)
            else:
                self.should_exit = True

    @property
    def drained(self) -> asyncio.Task[None] | None:
        return self._drain_task
