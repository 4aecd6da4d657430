"""The shared state in Redis, through redis-py's asyncio client.

Every operation is bounded (``OPERATION_TIMEOUT_S``): a call never waits on
a Redis that went away for longer than that, and what fails is raised as
``StoreUnavailable``, whose reason never carries the URL (it may hold a
password). Keys live under one prefix, so several deployments can share a
Redis. A conditional write is one Lua script, so it is atomic: the check
and the write cannot be split by another instance's write.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import redis.asyncio as redis
from redis.exceptions import RedisError

from .store import BOARD_LIMIT, Claim, StoreUnavailable

OPERATION_TIMEOUT_S = 1.0
DEFAULT_PREFIX = "gemini-phone-bridge:"

# KEYS[1]: a board's index (a sorted set of names scored by expiry), KEYS[2]: the name's
# text. ARGV: the name, the text, its time to live (ms). Scored and pruned by Redis's own
# clock: one server's wrong clock can neither drop the others from the board nor hide
# itself.
_PUBLISH = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[3])
redis.call('SET', KEYS[2], ARGV[2], 'PX', ttl)
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
return 1
"""

# KEYS[1]: the record. ARGV: time to live (ms), the number of conditions (-1: none; a
# record must exist for 0 or more), the conditions as field/value pairs, then the
# fields to set as field/value pairs.
_SET_FIELDS = """
local conditions = tonumber(ARGV[2])
if conditions >= 0 then
  if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
  for i = 0, conditions - 1 do
    if redis.call('HGET', KEYS[1], ARGV[3 + 2 * i]) ~= ARGV[4 + 2 * i] then return 0 end
  end
end
local first = 3 + 2 * math.max(conditions, 0)
if first < #ARGV then
  redis.call('HSET', KEYS[1], unpack(ARGV, first, #ARGV))
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
"""


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


class RedisStore:
    """``StateStore`` on a Redis server (``STATE_URL=redis://…``, ``rediss://`` for TLS)."""

    def __init__(self, url: str, *, prefix: str = DEFAULT_PREFIX) -> None:
        self._redis = redis.Redis.from_url(
            url,
            socket_timeout=OPERATION_TIMEOUT_S,
            socket_connect_timeout=OPERATION_TIMEOUT_S,
            health_check_interval=10,
        )
        self._prefix = prefix
        self._set_fields = self._redis.register_script(_SET_FIELDS)
        self._publish = self._redis.register_script(_PUBLISH)

    @property
    def shared(self) -> bool:
        return True

    @property
    def degraded(self) -> bool:
        return False

    async def _do(self, what: str, operation: object) -> object:
        """Await one Redis operation within the timeout; failures become StoreUnavailable."""
        try:
            async with asyncio.timeout(OPERATION_TIMEOUT_S):
                return await operation  # type: ignore[misc]
        except TimeoutError:
            raise StoreUnavailable(
                f"Redis did not answer {what} within {OPERATION_TIMEOUT_S:g} s"
            ) from None
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"Redis failed {what}: {exc.__class__.__name__}") from None

    async def ping(self) -> None:
        await self._do("a ping", self._redis.ping())

    async def claim(self, key: str, ttl_s: float) -> Claim:
        done = await self._do(
            "a claim", self._redis.set(self._prefix + key, b"1", nx=True, px=_ms(ttl_s))
        )
        return Claim.FIRST if done else Claim.TAKEN

    async def set_fields(
        self,
        key: str,
        fields: Mapping[str, str],
        ttl_s: float,
        *,
        only_if: Mapping[str, str] | None = None,
    ) -> bool:
        args: list[str | int] = [_ms(ttl_s), -1 if only_if is None else len(only_if)]
        for name, value in (only_if or {}).items():
            args += [name, value]
        for name, value in fields.items():
            args += [name, value]
        done = await self._do(
            "a conditional write", self._set_fields(keys=[self._prefix + key], args=args)
        )
        return bool(done)

    async def get_fields(self, key: str) -> dict[str, str] | None:
        raw = await self._do("a read", self._redis.hgetall(self._prefix + key))
        if not raw:
            return None
        assert isinstance(raw, dict)
        return {k.decode(): v.decode() for k, v in raw.items()}

    async def put_blob(self, key: str, data: bytes, ttl_s: float) -> None:
        await self._do("a write", self._redis.set(self._prefix + key, data, px=_ms(ttl_s)))

    async def get_blob(self, key: str) -> bytes | None:
        value = await self._do("a read", self._redis.get(self._prefix + key))
        return value if isinstance(value, bytes) else None

    async def delete(self, key: str) -> None:
        await self._do("a delete", self._redis.delete(self._prefix + key))

    async def publish(self, board: str, name: str, text: str, ttl_s: float) -> None:
        """The text under ``<board>:<name>`` with its TTL, and the name in the board's index,
        pruned of the expired: one script, one round trip."""
        index = self._prefix + board
        await self._do(
            "a publish",
            self._publish(keys=[index, f"{index}:{name}"], args=[name, text, _ms(ttl_s)]),
        )

    async def published(self, board: str) -> list[str]:
        index = self._prefix + board

        async def read() -> list[str]:
            names = await self._redis.zrange(index, 0, BOARD_LIMIT - 1)
            keys = [f"{index}:{n.decode()}" for n in names if isinstance(n, bytes)]
            if not keys:
                return []
            values = await self._redis.mget(keys)  # a name just expired reads as None
            return [v.decode() for v in values if isinstance(v, bytes)]

        found = await self._do("a board read", read())
        assert isinstance(found, list)
        return found

    async def schedule(self, queue: str, key: str, at: float) -> None:
        await self._do("a schedule", self._redis.zadd(self._prefix + queue, {key: at}))

    async def due(self, queue: str, until: float, limit: int) -> list[str]:
        found = await self._do(
            "a queue read",
            self._redis.zrangebyscore(self._prefix + queue, "-inf", until, start=0, num=limit),
        )
        assert isinstance(found, list)
        return [k.decode() for k in found]

    async def unschedule(self, queue: str, key: str) -> None:
        await self._do("an unschedule", self._redis.zrem(self._prefix + queue, key))

    async def close(self) -> None:
        try:
            async with asyncio.timeout(OPERATION_TIMEOUT_S):
                await self._redis.aclose()
        except (TimeoutError, RedisError, OSError):
            pass  # closing: nothing is waiting on it any more
