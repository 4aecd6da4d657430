"""Which calls this instance takes: capacity, and draining before a shutdown.

A webhook that is answered reserves a place until its stream starts (or the
stream token expires), so a burst of calls cannot overshoot
MAX_CONCURRENT_CALLS between TwiML and ``start``. Draining refuses new calls,
lets the running ones finish, and after DRAIN_TIMEOUT ends the rest with a
spoken goodbye, all before uvicorn starts closing sockets.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger(__name__)

RESERVATION_S = 60.0  # as long as a stream token lives
# Streams accepted and not yet authenticated, at once. Twilio's wait for 'start' is
# milliseconds, so this many means a burst of calls within the same moment.
MAX_UNAUTHENTICATED_STREAMS = 64


class UnauthenticatedStreams:
    """How many streams are waiting for their ``start`` now, against a limit.

    Each one holds a socket, a task and whatever frames uvicorn has already read for
    it; without a limit an attacker's idle connections add up (docs/security.md).
    """

    def __init__(self, limit: int = MAX_UNAUTHENTICATED_STREAMS) -> None:
        self.limit = limit
        self.waiting = 0

    def enter(self) -> bool:
        if self.waiting >= self.limit:
            return False
        self.waiting += 1
        return True

    def leave(self) -> None:
        self.waiting -= 1


class EndableCall(Protocol):
    async def end_with_goodbye(self, timeout_s: float) -> None: ...


class Admission:
    def __init__(self, max_calls: int | None, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_calls = max_calls
        self.draining = False
        self._clock = clock
        self._reserved: dict[str, float] = {}  # CallSid → reservation expiry
        self._calls: set[EndableCall] = set()
        self._all_gone = asyncio.Event()
        self._all_gone.set()

    def _prune(self) -> None:
        now = self._clock()
        self._reserved = {sid: exp for sid, exp in self._reserved.items() if exp > now}

    @property
    def in_use(self) -> int:
        self._prune()
        return len(self._calls) + len(self._reserved)

    @property
    def has_room(self) -> bool:
        return not self.draining and (self.max_calls is None or self.in_use < self.max_calls)

    @property
    def not_ready_reason(self) -> str | None:
        if self.draining:
            return "draining"
        if not self.has_room:
            return "full"
        return None

    def reserve(self, call_sid: str) -> bool:
        """The webhook: take the call (True) or turn it away (False)."""
        if not self.has_room:
            return False
        self._reserved[call_sid] = self._clock() + RESERVATION_S
        return True

    def admit(self, call: EndableCall, call_sid: str) -> bool:
        """The stream started. A reserved call always gets in; an unannounced one
        (its webhook reached another instance) only while there is room."""
        if self._reserved.pop(call_sid, None) is None and not self.has_room:
            return False
        self._calls.add(call)
        self._all_gone.clear()
        return True

    def release(self, call: EndableCall) -> None:
        self._calls.discard(call)
        if not self._calls:
            self._all_gone.set()

    async def drain(self, timeout_s: float, goodbye_timeout_s: float = 15.0) -> None:
        """Stop taking calls, wait for the running ones, then end the rest with a goodbye."""
        self.draining = True
        log.info("draining: %d calls running, waiting up to %.0f s", len(self._calls), timeout_s)
        deadline = self._clock() + timeout_s
        while self._clock() < deadline and (self._calls or self.in_use):
            try:
                async with asyncio.timeout(min(1.0, max(0.0, deadline - self._clock()))):
                    await self._all_gone.wait()
            except TimeoutError:
                pass
        remaining = list(self._calls)
        if remaining:
            log.warning("drain timeout: ending %d calls with a goodbye", len(remaining))
            await asyncio.gather(
                *(call.end_with_goodbye(goodbye_timeout_s) for call in remaining),
                return_exceptions=True,
            )
            try:
                async with asyncio.timeout(10):
                    await self._all_gone.wait()
            except TimeoutError:
                log.error("%d calls still open after their goodbye", len(self._calls))
        log.info("drained")
