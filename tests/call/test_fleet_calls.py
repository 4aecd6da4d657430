"""The fleet's books of calls over a real Redis: two instances (two ``FleetCalls`` with
their own clients) answering, owning, moving and ending one call."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from bridge.call.fleet import FleetCalls
from bridge.call.shared_call import (
    AfterStream,
    CallStatus,
    EndReason,
    ReleaseReason,
    SharedCall,
)
from bridge.call.tenure import Tenure
from bridge.call.transcript import Speaker, Turn
from bridge.state import Claim, FallbackStore, MemoryStore
from bridge.state.redis_store import RedisStore
from bridge.testing.redis_server import RedisServer


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))


class Pair:
    """Two instances sharing one Redis (their own prefix per test)."""

    def __init__(self, url: str, prefix: str) -> None:
        self.a = FleetCalls(RedisStore(url, prefix=prefix), "web-a", max_moves=2)
        self.b = FleetCalls(RedisStore(url, prefix=prefix), "web-b", max_moves=2)

    async def live(self, call_sid: str = "CA1") -> SharedCall:
        """A call answered by web-a, its first stream live there."""
        await self.a.answer(call_sid, "+1", "+2")
        record = await self.a.take(call_sid, 1)
        assert record is not None
        return record

    async def close(self) -> None:
        await self.a.store.close()
        await self.b.store.close()


_prefixes = iter(range(10_000))


def pair(server: RedisServer) -> Pair:
    return Pair(server.url, f"test-fleet-{next(_prefixes)}:")


def test_a_callsid_is_answered_once_fleet_wide(redis_server: RedisServer) -> None:
    async def scenario() -> None:
        p = pair(redis_server)
        assert await p.a.answer("CA1", "+1", "+2") is Claim.FIRST
        assert await p.b.answer("CA1", "+1", "+2") is Claim.TAKEN
        record = await p.b.read("CA1")
        assert record is not None and record.status is CallStatus.ANSWERED
        await p.close()

    run(scenario())


def test_a_released_call_is_handed_to_one_request_of_several(redis_server: RedisServer) -> None:
    async def scenario() -> None:
        p = pair(redis_server)
        record = await p.live()
        assert record.owner == "web-a"
        await p.a.release(record, ReleaseReason.HANDED_OVER)
        # Twilio's request, and a replay of it racing it: one gets the next stream.
        steps = await asyncio.gather(
            p.a.after_stream("CA1", 1, "+1", "+2"), p.b.after_stream("CA1", 1, "+1", "+2")
        )
        actions = sorted(s.action.value for s in steps)
        assert actions == ["reconnect", "stale"]
        moved = await p.b.read("CA1")
        assert moved is not None and (moved.stream, moved.moves) == (2, 1)
        # The old stream, still writing, cannot overwrite the call now.
        assert not await p.a.save(record, None)
        assert await p.b.take("CA1", 1) is None  # superseded
        taken = await p.b.take("CA1", 2)
        assert taken is not None and taken.owner == "web-b"
        await p.close()

    run(scenario())


def test_a_crashed_owner_s_call_moves_once_its_presence_lapses(redis_server: RedisServer) -> None:
    async def scenario() -> None:
        p = pair(redis_server)
        await p.a.heartbeat()
        await p.live()
        # web-a stops beating (killed): the request waits for its presence to lapse.
        step = await p.b.after_stream("CA1", 1, "+1", "+2")
        assert step.action is AfterStream.RECONNECT
        await p.close()

    run(scenario())


def test_a_call_ended_by_design_hangs_up_and_its_question_is_gone(
    redis_server: RedisServer,
) -> None:
    async def scenario() -> None:
        p = pair(redis_server)
        record = await p.live()
        await p.a.save(record, b"\xff" * 160)
        assert await p.b.question("CA1") == b"\xff" * 160
        await p.a.end("CA1", 1, EndReason.END_CALL)
        assert (await p.b.after_stream("CA1", 1, "+1", "+2")).action is AfterStream.HANG_UP
        assert await p.b.question("CA1") == b""
        await p.close()

    run(scenario())


def test_moves_run_out_into_the_apology(redis_server: RedisServer) -> None:
    async def scenario() -> None:
        p = pair(redis_server)
        await p.a.answer("CA1", "+1", "+2")
        for stream in (1, 2, 3):
            record = await p.a.take("CA1", stream)
            assert record is not None
            await p.a.release(record, ReleaseReason.STREAM_LOST)
            step = await p.b.after_stream("CA1", stream, "+1", "+2")
            if stream < 3:
                assert step.action is AfterStream.RECONNECT
        assert step.action is AfterStream.APOLOGY  # max_moves is 2
        await p.close()

    run(scenario())


def test_a_tenure_writes_what_changed_and_notices_when_it_lost_the_call(
    redis_server: RedisServer,
) -> None:
    async def scenario() -> None:
        p = pair(redis_server)
        await p.a.answer("CA1", "+1", "+2")
        said: list[Turn] = []

        def conversation(record: Any) -> Any:
            return replace(record, turns=tuple(said), handle=f"h{len(said)}"), None

        tenure = await Tenure.begin(p.a, "CA1", 1, "+1", "+2", conversation)
        assert tenure is not None and not tenure.picks_up
        tenure.start()
        said.append(Turn(Speaker.CALLER, "Hello?"))
        tenure.touch()
        tenure.touch()  # coalesced with the first
        for _ in range(100):
            seen = await p.b.read("CA1")
            if seen is not None and seen.handle == "h1":
                break
            await asyncio.sleep(0.02)
        assert seen is not None and seen.turns == (Turn(Speaker.CALLER, "Hello?"),)
        # web-a is cut off (it never beat its heartbeat here): Twilio's request hands the
        # call to a next stream, and web-a's tenure learns it lost the call.
        step = await p.b.after_stream("CA1", 1, "+1", "+2")
        assert step.action is AfterStream.RECONNECT
        tenure.touch()
        await asyncio.wait_for(tenure.lost.wait(), 5)
        await tenure.close()
        # The next stream, on web-b, picks the conversation up.
        later = await Tenure.begin(p.b, "CA1", 2, "+1", "+2", conversation)
        assert later is not None and later.picks_up and later.record.handle == "h1"
        await later.end(EndReason.CALLER_HUNG_UP)
        await later.end(EndReason.FAILED)  # the first end stands
        assert later.ended is EndReason.CALLER_HUNG_UP
        ended = await p.a.read("CA1")
        assert ended is not None and ended.ended is EndReason.CALLER_HUNG_UP
        await p.close()

    run(scenario())


def test_one_server_without_a_shared_store_keeps_the_same_books() -> None:
    async def scenario() -> None:
        fleet = FleetCalls(MemoryStore(), "solo", max_moves=2)
        assert not fleet.shared
        assert await fleet.answer("CA1", "+1", "+2") is Claim.FIRST
        assert await fleet.answer("CA1", "+1", "+2") is Claim.TAKEN
        record = await fleet.take("CA1", 1)
        assert record is not None
        await fleet.end("CA1", 1, EndReason.GEMINI_FAILED)
        assert (await fleet.after_stream("CA1", 1, "+1", "+2")).action is AfterStream.APOLOGY

    run(scenario())


def test_while_redis_is_away_an_unknown_call_gets_extra_tries() -> None:
    async def scenario() -> None:
        gone = RedisStore("redis://127.0.0.1:1/0")  # nothing listens there
        fleet = FleetCalls(FallbackStore(gone), "web-a", max_moves=2)
        step = await fleet.after_stream("CA1", 5, "+1", "+2")
        assert step.action is AfterStream.RECONNECT  # beyond max_moves, within the extra
        await fleet.store.close()

    run(scenario())


def test_while_redis_is_away_a_record_behind_the_call_s_streams_starts_afresh() -> None:
    """Server A answered the webhook (stream 1, in its own memory); server B handed out
    stream 2 meanwhile. Twilio's request about stream 2 reaches A: not a replay."""

    async def scenario() -> None:
        fleet = FleetCalls(FallbackStore(RedisStore("redis://127.0.0.1:1/0")), "a", max_moves=2)
        await fleet.answer("CA1", "+1", "+2")
        step = await fleet.after_stream("CA1", 2, "+1", "+2")
        assert step.action is AfterStream.RECONNECT
        assert step.record is not None and step.record.stream == 3
        await fleet.store.close()

    run(scenario())


def test_a_call_that_ended_is_not_released_by_a_later_hand_over(
    redis_server: RedisServer,
) -> None:
    """``end_call``, then a deploy before the hang-up: the call stays ended."""

    async def scenario() -> None:
        p = pair(redis_server)
        await p.a.answer("CA1", "+1", "+2")
        tenure = await Tenure.begin(p.a, "CA1", 1, "+1", "+2", lambda r: (r, None))
        assert tenure is not None
        await tenure.end(EndReason.END_CALL)
        await tenure.release(ReleaseReason.HANDED_OVER)
        assert (await p.b.after_stream("CA1", 1, "+1", "+2")).action is AfterStream.HANG_UP
        await p.close()

    run(scenario())


def test_an_end_stands_even_where_the_store_has_no_record(redis_server: RedisServer) -> None:
    async def scenario() -> None:
        p = pair(redis_server)
        await p.a.end("CA1", 1, EndReason.GEMINI_FAILED)  # Redis had restarted empty
        assert (await p.b.after_stream("CA1", 1, "+1", "+2")).action is AfterStream.APOLOGY
        await p.close()

    run(scenario())


def test_an_action_request_replayed_after_the_record_expired_is_stale(
    redis_server: RedisServer,
) -> None:
    """A captured, signed action request must never buy a fresh stream token later."""

    async def scenario() -> None:
        p = pair(redis_server)
        record = await p.live()
        await p.a.release(record, ReleaseReason.STREAM_LOST)
        assert (await p.b.after_stream("CA1", 1, "+1", "+2")).action is AfterStream.RECONNECT
        await p.a.store.delete("call:CA1")  # the record's time ran out
        assert (await p.b.after_stream("CA1", 1, "+1", "+2")).action is AfterStream.STALE
        # A call the store lost is still started afresh, once per stream.
        assert (await p.b.after_stream("CA1", 2, "+1", "+2")).action is AfterStream.RECONNECT
        assert (await p.a.after_stream("CA1", 2, "+1", "+2")).action is AfterStream.STALE
        await p.close()

    run(scenario())
