"""Blocking work off the event loop, in bounded pools of its own.

HTTP tools and Twilio's REST calls each get their own threads (each package owns its
pool): six slow tool backends
used to hold every thread of asyncio's default pool, so the next tool, a hang-up or a
transfer waited behind them, and so would the default pool's other users (DNS lookups
for Gemini, token refreshes). Now a slow tool can only delay other tools.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


class ThreadPool:
    """A fixed number of threads, created as needed. Work waiting for a thread when its
    caller gives up (a timeout) is dropped, never started late."""

    def __init__(self, name: str, threads: int) -> None:
        self.threads = threads
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=name)
        self._lock = threading.Lock()
        self._busy = 0

    @property
    def busy(self) -> int:
        """Threads running work now (what a timeout's log says when all of them were)."""
        return self._busy

    async def run(self, work: Callable[..., T], *args: object) -> T:
        """``work(*args)`` in one of the threads, with the caller's context (the call's
        log tags), as ``asyncio.to_thread`` would."""
        context = contextvars.copy_context()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, context.run, self._counted, work, *args)

    def _counted(self, work: Callable[..., T], *args: object) -> T:
        with self._lock:
            self._busy += 1
        try:
            return work(*args)
        finally:
            with self._lock:
                self._busy -= 1
