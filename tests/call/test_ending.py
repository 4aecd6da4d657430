"""Ending a call from the bridge's side waits for the last words to be heard, on events."""

from __future__ import annotations

import asyncio
import time

from bridge.call.ending import CallEnding
from bridge.call.model_turns import ModelTurns
from bridge.call.turn_state import TurnState

CHUNK = bytes(960)


def test_the_hang_up_waits_for_the_goodbye_to_be_said_and_played() -> None:
    closed: list[str] = []
    said: list[str] = []

    async def scenario() -> None:
        turns = ModelTurns(TurnState())

        async def say(text: str) -> None:
            said.append(text)

        async def close(reason: str) -> None:
            closed.append(reason)

        ending = CallEnding(turns, call_sid="CA1", rest=None, say=say, close=close)
        goodbye = asyncio.create_task(ending.goodbye("Say goodbye.", timeout_s=5))
        await asyncio.sleep(0.1)
        assert said == ["Say goodbye."] and closed == []
        turns.audio((CHUNK,))  # the model says it...
        mark = turns.sent(2, end_of_turn=True)
        turns.turn_complete()
        ending.changed.set()
        await asyncio.sleep(0.1)
        assert closed == []  # ...and it is still playing at Twilio
        started = time.monotonic()
        assert mark is not None
        turns.marked(mark)  # played
        ending.changed.set()
        await asyncio.wait_for(goodbye, 1)
        assert time.monotonic() - started < 0.2  # on the event, not a poll
        assert ending.by_bridge

    asyncio.run(scenario())
    assert closed == ["goodbye"]  # no REST credentials: the stream is closed instead


def test_the_first_decision_stands_and_the_call_end_cancels_what_waits() -> None:
    async def scenario() -> None:
        turns = ModelTurns(TurnState())

        async def noop(text: str) -> None:
            return None

        ending = CallEnding(turns, call_sid="CA1", rest=None, say=noop, close=noop)
        ending.end_after_speech()
        ending.transfer_after_speech("+14155550100")  # ignored: the hang-up was decided
        await asyncio.sleep(0.05)
        await ending.close()

    asyncio.run(scenario())
