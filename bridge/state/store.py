"""The operations the fleet's shared state is made of, whatever keeps it.

A call touches the store at its start, at its end, when its resumption
handle or summary changes, and on a heartbeat of seconds: never per frame.
So the interface is a handful of coarse, idempotent operations on string
keys, each with a time to live (nothing shared outlives its use):

* ``claim_once``: single-use things (an answered CallSid, a spent stream
  token, an ``action`` request already acted on), true for the first claim
  of a key across the fleet, false for every later one;
* ``set_fields`` / ``get_fields``: a record of named string fields (a call),
  written only while a condition on its fields holds (the call's owner is
  the stream that holds its current number: a server that lost the call
  cannot overwrite what the next one wrote);
* ``put_blob`` / ``get_blob``: bytes (the caller's unanswered question);
* ``put_text`` / ``texts``: what each instance publishes about itself, read
  back by prefix (the fleet's stats).

Two implementations: ``MemoryStore`` (this process; the default, so one
server with no settings works as it always has) and ``RedisStore``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol


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

    async def claim_once(self, key: str, ttl_s: float) -> bool: ...

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

    async def put_text(self, key: str, text: str, ttl_s: float) -> None: ...

    async def texts(self, prefix: str) -> list[str]: ...

    async def close(self) -> None: ...
