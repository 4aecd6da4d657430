"""A call's one report: whichever signal comes first queues it, and only once, over a
real Redis shared by two servers' ledgers."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from bridge.call.facts import CallFacts, Direction
from bridge.call.fleet import FleetCalls
from bridge.call.ledger import CallLedger
from bridge.call.report import Closing, StreamSegment
from bridge.call.shared_call import EndReason
from bridge.call.transcript import Speaker, Turn
from bridge.hooks.outbox import ReportOutbox
from bridge.state.redis_store import RedisStore
from bridge.testing.redis_server import RedisServer


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with RedisServer() as server:
        yield server.url


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))


def ledger(url: str, prefix: str, name: str) -> CallLedger:
    store = RedisStore(url, prefix=prefix)
    fleet = FleetCalls(store, name, max_moves=5)
    return CallLedger(fleet, ReportOutbox(store, "http://receiver/report", "s" * 20, 60.0))


def test_two_servers_told_of_one_end_queue_one_report(redis_url: str) -> None:
    async def scenario() -> None:
        prefix = secrets.token_hex(4) + ":"
        one, two = ledger(redis_url, prefix, "one"), ledger(redis_url, prefix, "two")
        sid = "CA" + secrets.token_hex(16)
        await one.write_facts(CallFacts(sid, Direction.INBOUND, "+1415", "+1416", "default"))
        segment = StreamSegment(1, "one", 1.0, 2.0, "completed",
                                transcript=[{"speaker": "caller", "text": "hi", "at": 1.5}])  # fmt: skip
        await one.stream_over(sid, segment, None)
        done = await asyncio.gather(
            one.close(sid, Closing.ended(EndReason.END_CALL)),
            two.close(sid, Closing.ended(EndReason.CALLER_HUNG_UP)),
        )
        assert sorted(done) == [False, True]
        (envelope,) = await one.outbox.pending()
        assert envelope.payload["transcript"][0]["text"] == "hi"
        await two.twilio_ended(sid, "completed", 12)  # Twilio's word, later: nothing more
        assert len(await two.outbox.pending()) == 1

    run(scenario())


def test_twilio_s_final_status_reports_a_call_no_stream_ever_held(redis_url: str) -> None:
    async def scenario() -> None:
        one = ledger(redis_url, secrets.token_hex(4) + ":", "one")
        sid = "CA" + secrets.token_hex(16)
        await one.write_facts(CallFacts(sid, Direction.OUTBOUND, "+1415", "+44", "default"))
        await one.twilio_ended(sid, "no-answer", 0)
        (envelope,) = await one.outbox.pending()
        assert (envelope.payload["outcome"], envelope.payload["reason"]) == (
            "no_answer",
            "no_answer",
        )

    run(scenario())


def test_a_call_whose_server_died_is_reported_from_its_shared_record(redis_url: str) -> None:
    """The caller hung up before the call could move: Twilio's word reports it, with the
    conversation the dead server had saved."""

    async def scenario() -> None:
        prefix = secrets.token_hex(4) + ":"
        one = ledger(redis_url, prefix, "one")
        dead = FleetCalls(RedisStore(redis_url, prefix=prefix), "dead", max_moves=5)
        sid = "CA" + secrets.token_hex(16)
        await one.write_facts(CallFacts(sid, Direction.INBOUND, "+1415", "+1416", "default"))
        await dead.answer(sid, "+1415", "+1416")
        record = await dead.take(sid, 1)
        assert record is not None
        turns = (Turn(Speaker.ASSISTANT, "Hello!", 10.0), Turn(Speaker.CALLER, "Hi", 11.0))
        await dead.save(replace(record, turns=turns), None)
        await one.twilio_ended(sid, "completed", 30)  # "dead" never said it is alive
        (envelope,) = await one.outbox.pending()
        report = envelope.payload
        assert (report["outcome"], report["reason"]) == ("completed", "caller_hung_up")
        assert [t["text"] for t in report["transcript"]] == ["Hello!", "Hi"]

    run(scenario())
