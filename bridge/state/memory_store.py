"""The shared state kept in this process: what one server needs, and what a server falls
back to while the shared store is away. Expiry follows an injected clock."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from .store import BOARD_LIMIT, Claim


class MemoryStore:
    """``StateStore`` in a dict. Expired keys are dropped when met, and swept now and then
    so a long-running server does not keep what nobody reads again."""

    SWEEP_EVERY = 1024  # writes between sweeps

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._values: dict[str, tuple[float, object]] = {}  # key → (expires at, value)
        self._queues: dict[str, dict[str, float]] = {}  # queue → key → due at
        self._boards: dict[str, dict[str, tuple[float, str]]] = {}  # → name → (expiry, text)
        self._writes = 0

    @property
    def shared(self) -> bool:
        return False

    @property
    def degraded(self) -> bool:
        return False

    def _get(self, key: str) -> object | None:
        entry = self._values.get(key)
        if entry is None:
            return None
        if entry[0] <= self._clock():
            del self._values[key]
            return None
        return entry[1]

    def _put(self, key: str, value: object, ttl_s: float) -> None:
        self._values[key] = (self._clock() + ttl_s, value)
        self._writes += 1
        if self._writes % self.SWEEP_EVERY == 0:
            now = self._clock()
            self._values = {k: e for k, e in self._values.items() if e[0] > now}

    async def claim(self, key: str, ttl_s: float) -> Claim:
        if self._get(key) is not None:
            return Claim.TAKEN
        self._put(key, True, ttl_s)
        return Claim.FIRST

    async def set_fields(
        self,
        key: str,
        fields: Mapping[str, str],
        ttl_s: float,
        *,
        only_if: Mapping[str, str] | None = None,
    ) -> bool:
        current = self._get(key)
        record = dict(current) if isinstance(current, dict) else {}
        if only_if is not None and (
            current is None or any(record.get(k) != v for k, v in only_if.items())
        ):
            return False
        record.update(fields)
        self._put(key, record, ttl_s)
        return True

    async def get_fields(self, key: str) -> dict[str, str] | None:
        value = self._get(key)
        return dict(value) if isinstance(value, dict) else None

    async def put_blob(self, key: str, data: bytes, ttl_s: float) -> None:
        self._put(key, bytes(data), ttl_s)

    async def get_blob(self, key: str) -> bytes | None:
        value = self._get(key)
        return value if isinstance(value, bytes) else None

    async def delete(self, key: str) -> None:
        self._values.pop(key, None)

    async def publish(self, board: str, name: str, text: str, ttl_s: float) -> None:
        self._boards.setdefault(board, {})[name] = (self._clock() + ttl_s, text)

    async def published(self, board: str) -> list[str]:
        now, entries = self._clock(), self._boards.get(board, {})
        for name in [n for n, (expires, _) in entries.items() if expires <= now]:
            del entries[name]
        return [text for _, text in entries.values()][:BOARD_LIMIT]

    async def schedule(self, queue: str, key: str, at: float) -> None:
        self._queues.setdefault(queue, {})[key] = at

    async def due(self, queue: str, until: float, limit: int) -> list[str]:
        entries = self._queues.get(queue, {})
        return sorted((k for k, at in entries.items() if at <= until), key=entries.__getitem__)[
            :limit
        ]

    async def unschedule(self, queue: str, key: str) -> None:
        self._queues.get(queue, {}).pop(key, None)

    def scheduled(self) -> list[tuple[str, str, float]]:
        """Every queue entry (queue, key, due at): what an outage left here."""
        return [(q, k, at) for q, entries in self._queues.items() for k, at in entries.items()]

    def expires_in(self, key: str) -> float | None:
        entry = self._values.get(key)
        return None if entry is None else entry[0] - self._clock()

    async def close(self) -> None:
        self._values.clear()
        self._queues.clear()
