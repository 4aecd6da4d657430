"""The link across connections, on stand-in sessions (no sockets): a goAway swaps it, what
meets a swap is delivered after it, a stall is nudged and then replaced."""

from __future__ import annotations

import asyncio
import json
from typing import cast

from bridge.call.transcript import Transcript
from bridge.call.turn_state import TurnState
from bridge.gemini.client import parse_server_message
from bridge.gemini.link import GeminiLink, LinkEvents, SwapReason
from bridge.gemini.link_policy import LinkPolicy
from bridge.gemini.server import go_away_message, resumption_update_message, tool_call_message
from bridge.gemini.session import GeminiSession
from bridge.gemini.wire import FunctionCall, FunctionResponse, ServerMessage, SessionConfig
from tests.fakes import QUIET, VOICE, Clock, feed

CONFIG = SessionConfig(model="models/m", voice="Kore", system_prompt="x")


class StandInSession:
    """What the link uses of a GeminiSession: messages in, messages out, a close."""

    def __init__(self, config: SessionConfig, incoming: list[str]) -> None:
        self.config = config
        self.sent: list[str] = []
        self.audio: list[bytes] = []
        self.state = "open"
        self.setup_seconds = 0.01
        self.close_code: int | None = None
        self.close_reason = ""
        self._incoming: asyncio.Queue[str | None] = asyncio.Queue()
        for message in incoming:
            self._incoming.put_nowait(message)

    async def receive(self) -> ServerMessage | None:
        message = await self._incoming.get()
        return None if message is None else parse_server_message(message)

    def push(self, message: str | None) -> None:
        self._incoming.put_nowait(message)

    async def send(self, message: str) -> None:
        if self.state != "open":
            from websockets.exceptions import ConnectionClosed

            raise ConnectionClosed(None, None)
        self.sent.append(message)

    async def send_audio(self, pcm: bytes) -> None:
        self.audio.append(pcm)

    async def close(self) -> None:
        self.state = "closed"
        self.close_code = 1000
        self._incoming.put_nowait(None)


class StandInGemini:
    """Opens stand-in sessions; the first gets ``first``, each later one ``later``."""

    def __init__(self, first: list[str], later: list[str] | None = None, delay: float = 0.0):
        self.sessions: list[StandInSession] = []
        self._first, self._later, self._delay = first, later or [], delay

    async def open(self, config: SessionConfig, setup_timeout: float) -> GeminiSession:
        if self.sessions:
            await asyncio.sleep(self._delay)
        session = StandInSession(config, self._later if self.sessions else self._first)
        self.sessions.append(session)
        return cast(GeminiSession, session)


def link(gemini: StandInGemini, turns: TurnState, **events: object) -> GeminiLink:
    policy = LinkPolicy(stall_timeout_s=0.3, supervise_every_s=0.02, idle_check_s=0.05)
    return GeminiLink(
        gemini.open,
        CONFIG,
        setup_timeout=1,
        turns=turns,
        transcript=Transcript(),
        policy=policy,
        events=LinkEvents(**events),  # type: ignore[arg-type]
    )


async def read_until(the_link: GeminiLink, condition: object, timeout: float = 3.0) -> None:
    """Read the link (as the call does) until ``condition()`` holds."""

    async def read() -> None:
        while await the_link.receive() is not None:
            pass

    reader = asyncio.create_task(read())
    try:
        async with asyncio.timeout(timeout):
            while not condition():  # type: ignore[operator]
                await asyncio.sleep(0.01)
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)


def test_a_go_away_with_nobody_speaking_swaps_at_once_resuming_with_the_handle() -> None:
    swaps: list[SwapReason] = []

    async def scenario() -> None:
        gemini = StandInGemini(
            [resumption_update_message("handle-1", resumable=True), go_away_message(30)]
        )
        the_link = link(
            gemini, TurnState(), on_reconnected=lambda reason, gap, resumed: swaps.append(reason)
        )
        await the_link.open()
        await read_until(the_link, lambda: len(gemini.sessions) == 2)
        first, second = gemini.sessions
        assert first.state == "closed"  # closed before the resume: Gemini refuses one otherwise
        assert second.config.resumption_handle == "handle-1"
        await the_link.close()

    asyncio.run(scenario())
    assert swaps == [SwapReason.GO_AWAY]


def test_what_meets_a_swap_goes_out_after_it_in_order_a_late_tool_answer_as_text() -> None:
    async def scenario() -> None:
        call = FunctionCall("call-7", "lookup_order", {"order_id": "A1"})
        gemini = StandInGemini([tool_call_message([call])], delay=0.3)
        the_link = link(gemini, TurnState())
        await the_link.open()
        message = await the_link.receive()
        assert message is not None and message.tool_calls == (call,)
        first = gemini.sessions[0]
        first.state = "closed"
        first.close_code = 1011
        first.push(None)  # Gemini drops the connection; the link reconnects (0.3 s)
        reading = asyncio.create_task(
            read_until(
                the_link, lambda: len(gemini.sessions) == 2 and len(gemini.sessions[1].sent) == 2
            )
        )
        await asyncio.sleep(0.1)  # mid-swap
        await the_link.send('{"realtimeInput":{"text":"(pressed 5)"}}')
        answer = FunctionResponse("call-7", "lookup_order", {"output": {"status": "shipped"}})
        await the_link.send_tool_response(answer)
        await reading
        second = gemini.sessions[1]
        assert second.sent[0] == '{"realtimeInput":{"text":"(pressed 5)"}}'
        late = json.loads(second.sent[1])["realtimeInput"]["text"]
        assert "lookup_order" in late and "shipped" in late  # the new connection never saw it
        await the_link.close()

    asyncio.run(scenario())


def test_a_stalled_answer_is_nudged_then_the_connection_replaced() -> None:
    nudges: list[bool] = []

    async def scenario() -> None:
        turns = TurnState()  # the link's clock: real time
        gemini = StandInGemini([])
        the_link = link(gemini, turns, on_nudge=lambda: nudges.append(True))
        await the_link.open()
        feed(turns, Clock(), VOICE, 25)
        await asyncio.sleep(0.75)
        feed(turns, Clock(), QUIET, 1)  # the caller finished; no answer comes
        assert turns.waiting_since() is not None
        await read_until(the_link, lambda: len(gemini.sessions) == 2)
        assert any("waiting for your answer" in m for m in gemini.sessions[0].sent)
        assert len(gemini.sessions[1].audio) > 0  # the question, sent again
        await the_link.close()

    asyncio.run(scenario())
    assert nudges == [True]
