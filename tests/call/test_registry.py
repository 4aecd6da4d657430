"""One set of books: admission, the records behind /api/calls/stats, the gauges."""

from __future__ import annotations

import asyncio

import pytest

from bridge.call.outcome import CallOutcome, Rejection
from bridge.call.registry import CallRegistry, NoRoom, mask_number
from bridge.observability.metrics import BridgeMetrics
from tests.fakes import Clock


class Call:
    goodbyes = 0

    async def end_with_goodbye(self, timeout_s: float) -> None:
        Call.goodbyes += 1


def metric(metrics: BridgeMetrics, text: str) -> float:
    for line in metrics.render().decode().splitlines():
        if line.startswith(text + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{text} not found")


def test_numbers_are_masked() -> None:
    assert mask_number("+14155550123") == "+*******0123"
    assert mask_number("client:alice") == "********lice"
    assert mask_number("") == ""
    assert mask_number("12345") == "*****"
    assert mask_number("softphone") == "softphone"


def test_a_call_on_the_books_moves_the_gauge_the_totals_and_its_outcome_together() -> None:
    metrics = BridgeMetrics()
    registry = CallRegistry(None, metrics)
    with registry.admit(Call(), "CA1", "MZ1", "+14155550123", "+18005550100") as a:
        a.frames_in = 50
        with registry.admit(Call(), "CA2", "MZ2", "+14155550124", "+18005550100") as b:
            snap = registry.snapshot()
            assert snap["totals"] == {"active": 2, "handled": 2, "completed": 0, "failed": 0}
            first = snap["active_calls"][0]
            assert first["caller"] == "+*******0123" and first["frames_in"] == 50
            assert metric(metrics, "bridge_active_calls") == 2
            b.outcome = CallOutcome.GEMINI_UNAVAILABLE
        a.outcome = CallOutcome.COMPLETED
    snap = registry.snapshot()
    assert snap["totals"] == {"active": 0, "handled": 2, "completed": 1, "failed": 1}
    assert [c["outcome"] for c in snap["recent_calls"]] == ["completed", "gemini_unavailable"]
    assert metric(metrics, "bridge_active_calls") == 0
    assert metric(metrics, 'bridge_calls_total{outcome="completed"}') == 1
    assert metric(metrics, 'bridge_calls_total{outcome="gemini_unavailable"}') == 1


def test_a_call_that_raises_is_still_taken_off_the_books_as_failed() -> None:
    metrics = BridgeMetrics()
    registry = CallRegistry(None, metrics)
    with pytest.raises(RuntimeError), registry.admit(Call(), "CA1", "MZ1", "+1", ""):
        raise RuntimeError("bridge bug")
    assert registry.active_count == 0
    assert metric(metrics, 'bridge_calls_total{outcome="failed"}') == 1


def test_capacity_counts_reservations_until_their_stream_or_their_expiry() -> None:
    clock = Clock()
    registry = CallRegistry(2, BridgeMetrics(), clock)
    assert registry.reserve("CA1") and registry.reserve("CA2")
    assert not registry.reserve("CA3") and registry.not_ready_reason == "full"
    with registry.admit(Call(), "CA1", "MZ1", "+1", ""):  # a reserved call always gets in
        with pytest.raises(NoRoom), registry.admit(Call(), "CA9", "MZ9", "+1", ""):
            pass  # an unannounced one only while there is room
    clock.now += 61  # CA2's stream never came: its place is free again
    assert registry.in_use == 0 and registry.reserve("CA3")


def test_a_drain_says_it_waits_for_answered_calls_whose_streams_have_not_started(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A newcomer saw "draining: 0 calls running" and then ten silent seconds: the wait was
    for a reserved place's stream, which the log did not name."""
    registry = CallRegistry(None, BridgeMetrics(), Clock())
    registry.reserve("CA1")
    with caplog.at_level("INFO", logger="bridge.call.registry"):
        asyncio.run(asyncio.wait_for(registry.drain(0), 10))  # no time to wait: just the log
    assert "draining: 0 calls running and 1 answered whose streams have not started" in caplog.text


def test_a_drain_waiting_for_a_reserved_stream_leaves_the_event_loop_free() -> None:
    """With no call running, the drain waited on an event already set: a loop that never
    yielded, so for up to 10 s the server answered nothing, not even the stream it was
    waiting for."""

    async def scenario() -> int:
        registry = CallRegistry(None, BridgeMetrics())
        registry.reserve("CA1")
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticker = asyncio.create_task(tick())
        await registry.drain(0.5)
        ticker.cancel()
        return ticks

    assert asyncio.run(asyncio.wait_for(scenario(), 10)) >= 20


def test_a_rejected_stream_is_counted_by_why() -> None:
    metrics = BridgeMetrics()
    CallRegistry(None, metrics).rejected(Rejection.FLOOD)
    assert metric(metrics, 'bridge_stream_rejections_total{reason="flood"}') == 1
    assert metric(metrics, 'bridge_calls_total{outcome="rejected"}') == 1


def test_draining_refuses_new_calls_and_ends_the_rest_with_a_goodbye() -> None:
    async def scenario() -> None:
        registry = CallRegistry(None, BridgeMetrics())
        call = Call()
        with registry.admit(call, "CA1", "MZ1", "+1", ""):
            drained = asyncio.create_task(registry.drain(0.1, goodbye_timeout_s=0.1))
            await asyncio.sleep(0.05)
            assert registry.not_ready_reason == "draining" and not registry.reserve("CA2")
            await asyncio.sleep(0.2)
            assert Call.goodbyes == 1
        await asyncio.wait_for(drained, 5)

    asyncio.run(scenario())
