"""When the link's watchdog looks again: rarely while nothing is due, on time when it is."""

from __future__ import annotations

import asyncio

import pytest

from bridge.call.transcript import Transcript
from bridge.call.turn_state import TurnState
from bridge.gemini.endpoint import ApiKeyAuth, GeminiEndpoint
from bridge.gemini.link import GeminiLink, LinkPolicy
from bridge.gemini.protocol import (
    ServerMessage,
    SessionConfig,
    go_away_message,
    parse_server_message,
)
from tests.fakes import QUIET, VOICE, Clock, feed

POLICY = LinkPolicy(stall_timeout_s=6.0, supervise_every_s=0.1, idle_check_s=1.0)


def make_link(turns: TurnState) -> GeminiLink:
    endpoint = GeminiEndpoint(
        url="ws://127.0.0.1:9/never", model_resource="models/m", auth=ApiKeyAuth("k"),
        backend="ai_studio",
    )  # fmt: skip
    config = SessionConfig(model="models/m", voice="Kore", system_prompt="x")
    return GeminiLink(
        endpoint, config, setup_timeout=1, turns=turns, transcript=Transcript(), policy=POLICY
    )


def speak_then_wait(turns: TurnState, clock: Clock) -> float:
    """The caller says something and stops; returns when their turn ended."""
    feed(turns, clock, VOICE, 50)
    feed(turns, clock, QUIET, 40)
    waiting_since = turns.waiting_since()
    assert waiting_since is not None
    return waiting_since


def test_with_nothing_due_it_looks_once_a_second() -> None:
    link = make_link(TurnState(Clock(0.0)))
    assert link._check_in(10.0) == 1.0


def test_a_stalled_answer_is_checked_at_its_deadline_for_the_nudge_and_the_reconnect() -> None:
    clock = Clock(0.0)
    turns = TurnState(clock)
    link = make_link(turns)
    ended = speak_then_wait(turns, clock)
    assert link._check_in(ended + 0.5) == 1.0  # far from due: the usual second
    assert link._check_in(ended + 5.7) == pytest.approx(0.3)  # wakes at the deadline
    assert link._check_in(ended + 5.99) == pytest.approx(0.1)  # never busier than 10 a second
    assert link._next_action(ended + 6.0) == "nudge"
    assert link._check_in(ended + 11.6) == pytest.approx(0.4)  # the second deadline
    assert link._next_action(ended + 12.0) == "stall"


def test_a_go_away_wakes_the_watchdog_and_it_then_looks_ten_times_a_second() -> None:
    class OneGoAway:
        async def receive(self) -> ServerMessage:
            return parse_server_message(go_away_message(4.0))

    async def scenario() -> None:
        link = make_link(TurnState(Clock(0.0)))
        link._session = OneGoAway()  # type: ignore[assignment]
        pause = asyncio.create_task(link._pause(link._check_in(0.0)))  # a full second
        await asyncio.sleep(0)
        message = await link.receive()
        assert message is not None and message.go_away is not None
        await asyncio.wait_for(pause, 0.2)  # woken, not the second later
        assert link._check_in(0.0) == 0.1
        assert link._next_action(0.0) == "goAway"  # nobody speaking: swap now

    asyncio.run(scenario())
