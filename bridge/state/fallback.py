"""A shared store that falls back to this process while it is away.

Redis restarts, and networks fail. A running call must not notice: when the
shared store does not answer, every operation goes to this process's own
``MemoryStore`` (what one server has always relied on), the outage is logged
once and shown by ``up``, and the shared store is tried again after
``retry_after_s``. Nothing waits longer than one bounded attempt.

What the process holds is not what the fleet holds: a single-use claim made
here during an outage is single-use on this instance only, so it is answered
``Claim.FIRST_HERE`` and the callers that guard security decide what to do
with that (docs/scaling.md). Those claims are copied to the shared store when
it answers again, so a key spent here during the outage stays spent fleet-wide;
so are the queue entries scheduled here (a report queued during the outage), with
the blobs they name, so the fleet delivers them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

from .memory_store import MemoryStore
from .store import Claim, StateStore, StoreUnavailable

log = logging.getLogger(__name__)

RETRY_AFTER_S = 2.0

T = TypeVar("T")


class FallbackStore:
    def __init__(
        self,
        shared: StateStore,
        *,
        retry_after_s: float = RETRY_AFTER_S,
        on_change: Callable[[bool], None] = lambda up: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._shared = shared
        self._local = MemoryStore(clock)
        self._retry_after = retry_after_s
        self._on_change = on_change
        self._clock = clock
        self._down_since: float | None = None
        self._next_try = 0.0
        self._claimed_here: dict[str, float] = {}  # during an outage: key → expiry

    @property
    def shared(self) -> bool:
        return self._shared.shared

    @property
    def up(self) -> bool:
        return self._down_since is None

    @property
    def degraded(self) -> bool:
        """The last operations went to this process alone."""
        return self._down_since is not None

    async def _either(
        self, shared: Callable[[], Awaitable[T]], local: Callable[[], Awaitable[T]]
    ) -> T:
        if self._down_since is None or self._clock() >= self._next_try:
            try:
                result = await self._shared_once_more(shared)
            except StoreUnavailable as exc:
                now = self._clock()
                if self._down_since is None:
                    self._down_since = now
                    log.warning(
                        "shared state store unreachable (%s): this instance carries on with "
                        "what it holds itself",
                        exc.reason,
                    )
                    self._on_change(False)
                self._next_try = now + self._retry_after
            else:
                if self._down_since is not None:
                    now = self._clock()
                    log.warning(
                        "shared state store reachable again after %.1f s", now - self._down_since
                    )
                    self._down_since = None
                    self._on_change(True)
                    try:
                        await self._copy_claims()
                        await self._copy_queues()
                    except StoreUnavailable:
                        pass  # gone again at once: the next operation notices
                return result
        return await local()

    async def _shared_once_more(self, shared: Callable[[], Awaitable[T]]) -> T:
        """One failed command is not an outage: a pooled connection that Redis dropped
        (it restarted, a proxy timed it out) fails once, and the retry gets a new one.
        While the store is known to be down, one try is enough."""
        try:
            return await shared()
        except StoreUnavailable:
            if self._down_since is not None:
                raise
        return await shared()

    async def claim(self, key: str, ttl_s: float) -> Claim:
        async def here() -> Claim:
            claim = await self._local.claim(key, ttl_s)
            if claim is Claim.TAKEN:
                return claim
            self._claimed_here[key] = self._clock() + ttl_s
            return Claim.FIRST_HERE

        return await self._either(lambda: self._shared.claim(key, ttl_s), here)

    async def _copy_claims(self) -> None:
        """The shared store answers again: what was claimed here meanwhile is claimed there
        too (a key already there stays as it is: either way it is spent)."""
        now = self._clock()
        for key, expires in list(self._claimed_here.items()):
            if expires > now:
                await self._shared.claim(key, expires - now)  # a failure keeps the rest
            del self._claimed_here[key]

    async def _copy_queues(self) -> None:
        for queue, key, at in self._local.scheduled():
            data = await self._local.get_blob(key)
            left = self._local.expires_in(key)
            if data is not None and left is not None and left > 0:
                await self._shared.put_blob(key, data, left)
                await self._shared.schedule(queue, key, at)
            await self._local.unschedule(queue, key)
            await self._local.delete(key)

    async def set_fields(
        self,
        key: str,
        fields: Mapping[str, str],
        ttl_s: float,
        *,
        only_if: Mapping[str, str] | None = None,
    ) -> bool:
        return await self._either(
            lambda: self._shared.set_fields(key, fields, ttl_s, only_if=only_if),
            lambda: self._local.set_fields(key, fields, ttl_s, only_if=only_if),
        )

    async def get_fields(self, key: str) -> dict[str, str] | None:
        return await self._either(
            lambda: self._shared.get_fields(key), lambda: self._local.get_fields(key)
        )

    async def put_blob(self, key: str, data: bytes, ttl_s: float) -> None:
        await self._either(
            lambda: self._shared.put_blob(key, data, ttl_s),
            lambda: self._local.put_blob(key, data, ttl_s),
        )

    async def get_blob(self, key: str) -> bytes | None:
        return await self._either(
            lambda: self._shared.get_blob(key), lambda: self._local.get_blob(key)
        )

    async def delete(self, key: str) -> None:
        await self._either(lambda: self._shared.delete(key), lambda: self._local.delete(key))

    async def publish(self, board: str, name: str, text: str, ttl_s: float) -> None:
        await self._either(
            lambda: self._shared.publish(board, name, text, ttl_s),
            lambda: self._local.publish(board, name, text, ttl_s),
        )

    async def published(self, board: str) -> list[str]:
        return await self._either(
            lambda: self._shared.published(board), lambda: self._local.published(board)
        )

    async def schedule(self, queue: str, key: str, at: float) -> None:
        await self._either(
            lambda: self._shared.schedule(queue, key, at),
            lambda: self._local.schedule(queue, key, at),
        )

    async def due(self, queue: str, until: float, limit: int) -> list[str]:
        return await self._either(
            lambda: self._shared.due(queue, until, limit),
            lambda: self._local.due(queue, until, limit),
        )

    async def unschedule(self, queue: str, key: str) -> None:
        await self._either(
            lambda: self._shared.unschedule(queue, key),
            lambda: self._local.unschedule(queue, key),
        )

    async def close(self) -> None:
        await self._shared.close()
        await self._local.close()
