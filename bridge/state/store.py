"""The operations the fleet's shared state is made of, whatever keeps it.

A call touches the store at its start, at its end, when its resumption
handle or summary changes, and on a heartbeat of seconds: never per frame.
So the interface is a handful of coarse, idempotent operations on string
keys, each with a time to live (nothing shared outlives its use):

* ``claim``: single-use things (an answered CallSid, a spent stream token),
  ``FIRST`` for the first claim of a key across the fleet, ``TAKEN`` for every
  later one, and ``FIRST_HERE`` when only this process could be asked (the
  shared store is away: see ``FallbackStore``);
* ``set_fields`` / ``get_fields``: a record of named string fields (a call),
  written only while a condition on its fields holds (the call's owner is
  the stream that holds its current number: a server that lost the call
  cannot overwrite what the next one wrote);
* ``put_blob`` / ``get_blob``: bytes (the caller's unanswered question);
* ``publish`` / ``published``: what each instance says about itself on a board
  (the fleet's stats), renewed every few seconds and gone soon after it stops:
  read back through the board's own index, never by scanning the keyspace (a
  large fleet's Redis holds millions of keys);
* ``schedule`` / ``due`` / ``unschedule``: a queue of keys, each with the time it is
  due (the reports waiting for delivery): reading what is due never scans the
  keyspace.

Two implementations: ``MemoryStore`` (this process; the default, so one
server with no settings works as it always has) and ``RedisStore``.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import Protocol

BOARD_LIMIT = 1000  # names read from one board: more servers than a fleet of 10,000 calls has


class Claim(Enum):
    FIRST = "first"  # nobody had claimed it, across the fleet
    TAKEN = "taken"  # claimed before
    FIRST_HERE = "first here"  # not claimed in this process; the fleet could not be asked


class StoreUnavailable(Exception):
    """The shared store did not answer in time; ``reason`` is safe to log (no URL)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class StateStore(Protocol):
    @property
    def shared(self) -> bool:
        """True when other instances see what this one writes."""
        ...

    @property
    def degraded(self) -> bool:
        """The shared store is away: the last operations went to this process alone."""
        ...

    async def claim(self, key: str, ttl_s: float) -> Claim: ...

    async def set_fields(
        self,
        key: str,
        fields: Mapping[str, str],
        ttl_s: float,
        *,
        only_if: Mapping[str, str] | None = None,
    ) -> bool:
        """Set ``fields`` (and renew the time to live); with ``only_if``, only while the
        record exists and holds each of those values. Returns whether it was written."""
        ...

    async def get_fields(self, key: str) -> dict[str, str] | None: ...

    async def put_blob(self, key: str, data: bytes, ttl_s: float) -> None: ...

    async def get_blob(self, key: str) -> bytes | None: ...

    async def delete(self, key: str) -> None: ...

    async def publish(self, board: str, name: str, text: str, ttl_s: float) -> None:
        """``name``'s ``text`` on ``board`` for ``ttl_s``, replacing what it said before."""
        ...

    async def published(self, board: str) -> list[str]:
        """What is on ``board`` and has not expired, at most ``BOARD_LIMIT`` texts."""
        ...

    async def schedule(self, queue: str, key: str, at: float) -> None:
        """``key`` (a blob's) is due at ``at`` (wall time) in ``queue``."""
        ...

    async def due(self, queue: str, until: float, limit: int) -> list[str]:
        """The keys due by ``until``, earliest first, at most ``limit``."""
        ...

    async def unschedule(self, queue: str, key: str) -> None: ...

    async def close(self) -> None: ...
