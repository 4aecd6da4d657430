"""Bounded pools of threads: work its caller gave up on is never started late."""

from __future__ import annotations

import asyncio
import threading

import pytest

from bridge.observability.logs import call_context
from bridge.threads import ThreadPool


def test_work_waiting_for_a_thread_is_dropped_when_its_caller_gives_up() -> None:
    pool = ThreadPool("test", 1)
    release = threading.Event()
    started: list[str] = []

    def work(name: str) -> str:
        started.append(name)
        release.wait(5)
        return name

    async def scenario() -> None:
        busy = asyncio.ensure_future(pool.run(work, "first"))
        await asyncio.sleep(0.05)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(pool.run(work, "queued"), 0.1)  # no thread free
        release.set()
        assert await busy == "first"
        assert await pool.run(work, "next") == "next"

    asyncio.run(scenario())
    assert started == ["first", "next"]


def test_the_callers_context_goes_with_the_work() -> None:
    pool = ThreadPool("test", 2)

    async def scenario() -> object:
        call_context.set({"call_sid": "CA1", "stream_sid": "MZ1"})
        return await pool.run(call_context.get)

    assert asyncio.run(scenario()) == {"call_sid": "CA1", "stream_sid": "MZ1"}
