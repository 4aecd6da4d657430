"""The fleet's calls in one view: each instance publishes its own stats to the shared store
every few seconds, and ``/api/calls/stats`` on any of them shows all of them.

What is published expires unless renewed, so an instance that stopped (or died) drops
out of the view within ``PUBLISH_TTL_S``. The instance answering shows its own calls as
they are now, not as last published. Prometheus stays per process, as it expects.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from ..state import StateStore

log = logging.getLogger(__name__)

RECENT_CALLS = 20
BOARD = "stats"  # the store's board the instances publish on
PUBLISH_TTL_S = 6.0


class FleetStats:
    PUBLISH_EVERY_S = 2.0

    def __init__(self, store: StateStore, instance: str, *, ttl_s: float = PUBLISH_TTL_S) -> None:
        self._store = store
        self._instance = instance
        self._ttl_s = ttl_s

    async def publish(self, stats: dict[str, Any]) -> None:
        stats = {**stats, "published_at": time.time()}
        text = json.dumps(stats, ensure_ascii=False, separators=(",", ":"))
        await self._store.publish(BOARD, self._instance, text, self._ttl_s)

    async def view(self, own: dict[str, Any]) -> dict[str, Any]:
        """Every instance's calls, ``own`` (this instance's, now) among them."""
        if not self._store.shared:
            return merged([own])
        published: list[dict[str, Any]] = [own]
        for text in await self._store.published(BOARD):
            try:
                stats = json.loads(text)
                if stats["instance"]["name"] != self._instance:
                    published.append(stats)
            except (ValueError, KeyError, TypeError):
                log.warning("skipped an instance's stats this version cannot read")
        return merged(published)


def merged(instances: list[dict[str, Any]]) -> dict[str, Any]:
    """One stats document from several instances'; each call says which instance has it."""
    active, recent = [], []
    totals = {"active": 0, "handled": 0, "completed": 0, "failed": 0}
    for stats in instances:
        name = stats["instance"]["name"]
        active += [{**call, "instance": name} for call in stats.get("active_calls", [])]
        recent += [{**call, "instance": name} for call in stats.get("recent_calls", [])]
        for key in totals:
            totals[key] += int(stats.get("totals", {}).get(key, 0))
    recent.sort(key=lambda call: str(call.get("ended_at", "")), reverse=True)
    return {
        "active_calls": active,
        "recent_calls": recent[:RECENT_CALLS],
        "totals": totals,
        "instance": instances[0]["instance"],
        "instances": sorted(
            (s["instance"] | {"active": len(s.get("active_calls", []))} for s in instances),
            key=lambda i: str(i["name"]),
        ),
    }
