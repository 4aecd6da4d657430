"""The outbox's delivery rules, with a receiver that answers as told and a hand-moved clock."""

from __future__ import annotations

import asyncio
from typing import Any

from bridge.hooks.outbox import PARALLEL, Envelope, ReportOutbox, backoff_s
from bridge.hooks.signed_post import HookAnswer
from bridge.state import MemoryStore
from tests.fakes import Clock


class Receiver:
    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses  # answered in turn; the last one from then on
        self.got: list[tuple[Any, dict[str, str]]] = []

    async def __call__(
        self, url: str, payload: Any, secret: str, timeout: float, headers: dict[str, str]
    ) -> HookAnswer:
        self.got.append((payload, headers))
        status = self.statuses[min(len(self.got), len(self.statuses)) - 1]
        return HookAnswer(status, b"", "" if status < 300 else f"answered HTTP {status}")


def outbox(store: MemoryStore, receiver: Receiver, clock: Clock, **kwargs: Any) -> ReportOutbox:
    counts: list[str] = []
    box = ReportOutbox(
        store, "https://crm.example/reports", "s" * 20, 600.0, post=receiver, wall_clock=clock,
        counted=counts.append, **kwargs,
    )  # fmt: skip
    box.counts = counts  # type: ignore[attr-defined]
    return box


def test_a_report_is_sent_once_and_removed() -> None:
    async def scenario() -> None:
        store, receiver, clock = MemoryStore(), Receiver([204]), Clock(1000.0)
        box = outbox(store, receiver, clock)
        await box.put("CA1", {"call_sid": "CA1"})
        await box.deliver_due()
        await box.deliver_due()
        assert [p for p, _ in receiver.got] == [{"call_sid": "CA1"}]
        assert receiver.got[0][1]["X-Bridge-Attempt"] == "1"
        assert await box.pending() == []
        assert box.counts == ["queued", "delivered"]  # type: ignore[attr-defined]

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_a_failing_receiver_gets_it_again_with_backoff_until_it_takes_it() -> None:
    async def scenario() -> None:
        store, receiver, clock = MemoryStore(), Receiver([500, 503, 200]), Clock(1000.0)
        box = outbox(store, receiver, clock)
        await box.put("CA1", {"n": 1})
        await box.deliver_due()
        await box.deliver_due()  # not due yet: 1 s later
        assert len(receiver.got) == 1
        clock.now += backoff_s(1)
        await box.deliver_due()
        clock.now += backoff_s(2) - 0.1
        await box.deliver_due()
        assert len(receiver.got) == 2
        clock.now += 0.1
        await box.deliver_due()
        assert [h["X-Bridge-Attempt"] for _, h in receiver.got] == ["1", "2", "3"]
        assert await box.pending() == []

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_a_report_refused_past_the_retry_window_is_given_up() -> None:
    async def scenario() -> None:
        store, receiver, clock = MemoryStore(), Receiver([500]), Clock(1000.0)
        box = outbox(store, receiver, clock)
        await box.put("CA1", {"n": 1})
        for _ in range(40):
            await box.deliver_due()
            clock.now += 30
        assert await box.pending() == []
        assert box.counts[-1] == "given_up"  # type: ignore[attr-defined]
        assert 600 / 300 < len(receiver.got) < 40  # backed off, not hammered

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_two_servers_never_send_the_same_attempt() -> None:
    async def scenario() -> None:
        store, receiver, clock = MemoryStore(), Receiver([200]), Clock(1000.0)
        one, two = outbox(store, receiver, clock), outbox(store, receiver, clock)
        await one.put("CA1", {"n": 1})
        await asyncio.gather(one.deliver_due(), two.deliver_due())
        assert len(receiver.got) == 1

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_a_held_report_waits_for_what_completes_it_then_goes_as_it_is() -> None:
    async def scenario() -> None:
        store, receiver, clock = MemoryStore(), Receiver([200]), Clock(1000.0)
        ready = {"now": False}

        async def complete(envelope: Envelope, final: bool) -> tuple[dict[str, Any], bool]:
            if ready["now"]:
                return {**envelope.payload, "recording": "url"}, True
            return envelope.payload, final

        box = outbox(store, receiver, clock, complete=complete)
        await box.put("CA1", {"n": 1}, hold_s=60)
        await box.deliver_due()
        assert receiver.got == []
        ready["now"] = True
        await box.deliver_due()
        assert receiver.got == []  # looked at again after a poll, not before
        clock.now += 1
        await box.deliver_due()
        assert receiver.got[0][0] == {"n": 1, "recording": "url"}

        await box.put("CA2", {"n": 2}, hold_s=60)
        ready["now"] = False
        clock.now += 61  # the wait is over: it goes without
        await box.deliver_due()
        assert receiver.got[1][0] == {"n": 2}

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_a_receiver_slow_on_one_report_holds_up_no_other() -> None:
    async def scenario() -> None:
        release = asyncio.Event()
        got: list[Any] = []

        async def post(
            url: str, payload: Any, secret: str, timeout: float, headers: dict[str, str]
        ) -> HookAnswer:
            got.append(payload)
            if payload["n"] == 1:
                await release.wait()
            return HookAnswer(200)

        store = MemoryStore()
        box = ReportOutbox(store, "https://crm.example/r", "s" * 20, 600.0, post=post)
        stop = asyncio.Event()
        loop = asyncio.create_task(box.run(stop))
        await box.put("CA1", {"n": 1})
        await asyncio.sleep(0.05)
        await box.put("CA2", {"n": 2})
        async with asyncio.timeout(2):
            while len(await box.pending()) != 1:  # the second went while the first hangs
                await asyncio.sleep(0.01)
        assert [p["n"] for p in got] == [1, 2]
        release.set()
        stop.set()
        await loop
        assert await box.pending() == []

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_reports_held_for_their_recordings_never_hold_up_one_that_is_ready() -> None:
    """Review: four reports waiting for their recordings were the earliest due at every
    poll and took all four places; a call with no recording waited 41 s behind them."""

    async def scenario() -> None:
        got: list[Any] = []

        async def post(
            url: str, payload: Any, secret: str, timeout: float, headers: dict[str, str]
        ) -> HookAnswer:
            got.append(payload)
            return HookAnswer(200)

        async def complete(envelope: Envelope, final: bool) -> tuple[dict[str, Any], bool]:
            return envelope.payload, final or "recorded" not in envelope.payload

        store = MemoryStore()
        box = ReportOutbox(
            store, "https://crm.example/r", "s" * 20, 600.0, post=post, complete=complete
        )
        stop = asyncio.Event()
        loop = asyncio.create_task(box.run(stop))
        for n in range(PARALLEL * 2):
            await box.put(f"CA{n}", {"n": n, "recorded": True}, hold_s=180)
        await asyncio.sleep(1.5)  # held, and looked at again, at least once
        await box.put("CA-plain", {"n": "plain"})
        async with asyncio.timeout(2.5):
            while not got:
                await asyncio.sleep(0.01)
        assert got == [{"n": "plain"}]
        stop.set()
        await loop

    asyncio.run(asyncio.wait_for(scenario(), 30))
