"""Both stores keep the same contract: the in-process one and Redis (a real server)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
import redis

from bridge.state import Claim, FallbackStore, MemoryStore, StateStore
from bridge.state.redis_store import RedisStore
from bridge.testing.redis_server import RedisServer
from tests.fakes import Clock


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


def run(coro: object) -> object:
    return asyncio.run(asyncio.wait_for(coro, 30))  # type: ignore[arg-type]


@pytest.fixture(params=["memory", "redis"])
def make_store(request: pytest.FixtureRequest, redis_server: RedisServer) -> object:
    """A factory, called inside the test's event loop (redis-py binds to the loop)."""
    counter = iter(range(1000))

    def make() -> StateStore:
        if request.param == "memory":
            return MemoryStore()
        return RedisStore(redis_server.url, prefix=f"test-{request.node.name}-{next(counter)}:")

    return make


def test_a_claim_succeeds_once_until_it_expires(make_store: object) -> None:
    async def scenario() -> None:
        store: StateStore = make_store()  # type: ignore[operator]
        assert await store.claim("token:abc", 0.3) is Claim.FIRST
        assert await store.claim("token:abc", 0.3) is Claim.TAKEN
        assert await store.claim("token:other", 0.3) is Claim.FIRST
        await asyncio.sleep(0.4)
        assert await store.claim("token:abc", 0.3) is Claim.FIRST  # expired: a new claim
        await store.close()

    run(scenario())


def test_concurrent_claims_have_exactly_one_winner(make_store: object) -> None:
    async def scenario() -> None:
        stores: list[StateStore] = [make_store() for _ in range(1)]  # type: ignore[operator]
        store = stores[0]
        results = await asyncio.gather(*(store.claim("answered:CA1", 5) for _ in range(20)))
        assert results.count(Claim.FIRST) == 1 and results.count(Claim.TAKEN) == 19
        await store.close()

    run(scenario())


def test_fields_are_written_only_while_the_condition_holds(make_store: object) -> None:
    async def scenario() -> None:
        store: StateStore = make_store()  # type: ignore[operator]
        assert await store.get_fields("call:CA1") is None
        assert not await store.set_fields("call:CA1", {"x": "1"}, 5, only_if={})  # no record
        assert await store.set_fields("call:CA1", {"stream": "1", "owner": "a"}, 5)
        # The instance that owns stream 1 may write; one that thinks it owns stream 2 may not.
        assert await store.set_fields(
            "call:CA1", {"handle": "h1"}, 5, only_if={"stream": "1", "owner": "a"}
        )
        assert not await store.set_fields("call:CA1", {"handle": "h2"}, 5, only_if={"stream": "2"})
        # The next stream takes over; the old owner's late writes are refused.
        assert await store.set_fields(
            "call:CA1", {"stream": "2", "owner": "b"}, 5, only_if={"stream": "1"}
        )
        assert not await store.set_fields(
            "call:CA1", {"handle": "late"}, 5, only_if={"stream": "1"}
        )
        assert await store.get_fields("call:CA1") == {"stream": "2", "owner": "b", "handle": "h1"}
        await store.delete("call:CA1")
        assert await store.get_fields("call:CA1") is None
        await store.close()

    run(scenario())


def test_records_and_blobs_expire(make_store: object) -> None:
    async def scenario() -> None:
        store: StateStore = make_store()  # type: ignore[operator]
        await store.set_fields("call:CA2", {"a": "b"}, 0.2)
        await store.put_blob("question:CA2", b"\xff\x7f" * 100, 0.2)
        assert await store.get_blob("question:CA2") == b"\xff\x7f" * 100
        await asyncio.sleep(0.3)
        assert await store.get_fields("call:CA2") is None
        assert await store.get_blob("question:CA2") is None
        await store.close()

    run(scenario())


def test_a_board_shows_what_each_name_said_last_until_it_expires(make_store: object) -> None:
    async def scenario() -> None:
        store: StateStore = make_store()  # type: ignore[operator]
        await store.publish("stats", "a", '{"id": "a", "n": 1}', 5)
        await store.publish("stats", "b", '{"id": "b"}', 0.3)
        await store.publish("other", "c", "no", 5)
        await store.publish("stats", "a", '{"id": "a", "n": 2}', 5)  # replaces a's
        assert sorted(await store.published("stats")) == ['{"id": "a", "n": 2}', '{"id": "b"}']
        await asyncio.sleep(0.4)
        assert await store.published("stats") == ['{"id": "a", "n": 2}']  # b stopped
        assert await store.published("nobody") == []
        await store.close()

    run(scenario())


def test_reading_a_board_never_scans_the_keyspace(redis_server: RedisServer) -> None:
    """A day of a large fleet's calls leaves millions of keys; a SCAN of them outlasted the
    store's 1 s budget and made a server take Redis for down (scripts/measure_store.py)."""

    async def scenario() -> None:
        store = RedisStore(redis_server.url, prefix="test-board-scan:")
        client = redis.Redis.from_url(redis_server.url)
        for name in ("web-1", "web-2"):
            await store.publish("stats", name, name, 5)
        scans = _command_calls(client, "scan")
        assert sorted(await store.published("stats")) == ["web-1", "web-2"]
        assert _command_calls(client, "scan") == scans
        await store.close()

    run(scenario())


def _command_calls(client: redis.Redis, command: str) -> int:
    stats = client.info("commandstats").get(f"cmdstat_{command}", {})
    return int(stats.get("calls", 0))


def test_a_queue_gives_what_is_due_earliest_first(make_store: object) -> None:
    async def scenario() -> None:
        store: StateStore = make_store()  # type: ignore[operator]
        await store.schedule("q", "b", 20.0)
        await store.schedule("q", "a", 10.0)
        await store.schedule("q", "c", 30.0)
        await store.schedule("other", "x", 1.0)
        assert await store.due("q", 25.0, 10) == ["a", "b"]
        assert await store.due("q", 100.0, 1) == ["a"]
        await store.schedule("q", "a", 40.0)  # moved later
        await store.unschedule("q", "b")
        assert await store.due("q", 100.0, 10) == ["c", "a"]
        await store.close()

    run(scenario())


def test_the_fallback_carries_on_in_process_while_redis_is_away_and_comes_back() -> None:
    changes: list[bool] = []

    async def scenario(server: RedisServer) -> None:
        clock = Clock()
        store = FallbackStore(
            RedisStore(server.url, prefix="fallback:"),
            retry_after_s=2.0,
            on_change=changes.append,
            clock=clock,
        )
        assert await store.claim("k", 60) is Claim.FIRST and store.up
        server.stop()
        # Redis is gone: the claim is answered from this process, at once, and says so.
        started = asyncio.get_running_loop().time()
        assert await store.claim("k2", 60) is Claim.FIRST_HERE
        assert await store.claim("k2", 60) is Claim.TAKEN  # single-use still holds here
        assert asyncio.get_running_loop().time() - started < 2.5
        assert store.degraded and changes == [False]
        server.start()
        clock.now += 1.0
        assert await store.claim("k3", 60) is Claim.FIRST_HERE  # not retried yet: still local
        assert store.degraded
        clock.now += 1.5
        assert await store.claim("k4", 60) is Claim.FIRST  # retried: Redis answers again
        assert store.up and changes == [False, True]
        # What was claimed here during the outage is spent fleet-wide now, in Redis itself.
        other = RedisStore(server.url, prefix="fallback:")
        assert await other.claim("k2", 60) is Claim.TAKEN
        assert await other.claim("k3", 60) is Claim.TAKEN
        await other.close()
        await store.close()

    with RedisServer() as server:
        run(scenario(server))


def test_what_was_queued_during_an_outage_reaches_redis_when_it_is_back() -> None:
    async def scenario(server: RedisServer) -> None:
        clock = Clock()
        store = FallbackStore(RedisStore(server.url, prefix="queued:"), clock=clock)
        server.stop()
        await store.put_blob("outbox:CA1", b"report", 600)
        await store.schedule("outbox", "outbox:CA1", 5.0)
        assert store.degraded
        server.start()
        clock.now += 3.0
        assert await store.claim("anything", 60) is Claim.FIRST  # Redis answers: copied there
        assert await store.due("outbox", 10.0, 10) == ["outbox:CA1"]
        other = RedisStore(server.url, prefix="queued:")
        assert await other.due("outbox", 10.0, 10) == ["outbox:CA1"]
        assert await other.get_blob("outbox:CA1") == b"report"
        await other.close()
        await store.close()

    with RedisServer() as server:
        run(scenario(server))


def test_one_dropped_connection_after_a_redis_restart_is_not_an_outage() -> None:
    """Redis restarted while the pool held idle connections: the first command on one of
    them fails, the retry gets a new one. Nothing is logged, nothing goes local."""
    changes: list[bool] = []

    async def scenario(server: RedisServer) -> None:
        store = FallbackStore(RedisStore(server.url, prefix="blip:"), on_change=changes.append)
        # Several connections in the pool, then Redis restarts under them.
        await asyncio.gather(*(store.claim(f"warm{i}", 60) for i in range(8)))
        server.stop()
        server.start()
        claims = await asyncio.gather(*(store.claim(f"after{i}", 60) for i in range(8)))
        assert claims == [Claim.FIRST] * 8  # Redis's, not this process's
        assert store.up and changes == []
        await store.close()

    with RedisServer() as server:
        run(scenario(server))


def test_a_board_is_kept_by_redis_s_clock_whatever_the_servers_clocks_say(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review: the index was scored and pruned by each publisher's clock; one server 90 s
    ahead dropped every other server from the fleet view each time it published."""

    async def scenario() -> None:
        store = RedisStore(redis_server.url, prefix="test-board-clock:")
        client = redis.Redis.from_url(redis_server.url)
        await store.publish("stats", "gone", "gone", 0.3)
        await store.publish("stats", "steady", "steady", 5)
        monkeypatch.setattr(time, "time", lambda: real_time() + 90)  # this server is ahead
        await asyncio.sleep(0.4)
        await store.publish("stats", "ahead", "ahead", 5)
        assert sorted(await store.published("stats")) == ["ahead", "steady"]
        # The stopped server's name was pruned by Redis's clock; nobody else's was.
        assert sorted(client.zrange("test-board-clock:stats", 0, -1)) == [b"ahead", b"steady"]
        await store.close()

    real_time = time.time
    run(scenario())
