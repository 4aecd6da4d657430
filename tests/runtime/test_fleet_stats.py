"""One view of the fleet's calls, from what each instance publishes (a real Redis)."""

from __future__ import annotations

import asyncio
from typing import Any

from bridge.runtime.fleet_stats import FleetStats
from bridge.state import MemoryStore
from bridge.state.redis_store import RedisStore
from bridge.testing.redis_server import RedisServer


def stats(name: str, calls: list[str], handled: int) -> dict[str, Any]:
    return {
        "instance": {"name": name},
        "active_calls": [{"call_sid": sid} for sid in calls],
        "recent_calls": [],
        "totals": {"active": len(calls), "handled": handled, "completed": handled, "failed": 0},
    }


def test_every_instance_s_calls_in_one_view_and_a_stopped_one_drops_out() -> None:
    async def scenario(url: str) -> None:
        a = FleetStats(RedisStore(url, prefix="stats-test:"), "web-a")
        b = FleetStats(RedisStore(url, prefix="stats-test:"), "web-b", ttl_s=0.3)
        await b.publish(stats("web-b", ["CA2", "CA3"], 5))
        await a.publish(stats("web-a", ["stale"], 1))  # its own: shown as it is now
        view = await a.view(stats("web-a", ["CA1"], 2))
        assert sorted((c["call_sid"], c["instance"]) for c in view["active_calls"]) == [
            ("CA1", "web-a"), ("CA2", "web-b"), ("CA3", "web-b"),
        ]  # fmt: skip
        assert view["totals"]["handled"] == 7
        assert [(i["name"], i["active"]) for i in view["instances"]] == [
            ("web-a", 1), ("web-b", 2),
        ]  # fmt: skip
        await asyncio.sleep(0.5)  # web-b stopped publishing: it died, or left
        view = await a.view(stats("web-a", ["CA1"], 2))
        assert [i["name"] for i in view["instances"]] == ["web-a"]

    with RedisServer() as server:
        asyncio.run(asyncio.wait_for(scenario(server.url), 30))


def test_one_server_shows_its_own_calls_the_same_way() -> None:
    async def scenario() -> None:
        view = await FleetStats(MemoryStore(), "solo").view(stats("solo", ["CA1"], 1))
        assert view["active_calls"] == [{"call_sid": "CA1", "instance": "solo"}]
        assert view["instances"] == [{"name": "solo", "active": 1}]

    asyncio.run(scenario())
