"""A call's link to Gemini Live that outlives any one connection.

Gemini always ends connections: about every ten minutes with ``goAway`` and
then close 1011, and now and then without warning. The caller must not
notice. So the link:

* keeps the latest resumable ``sessionResumptionUpdate`` handle;
* on ``goAway`` swaps to a new connection (same setup plus the handle),
  closing the old socket first (Gemini refuses a resume while it is open).
  When is ``SwapTiming``'s decision: at once, unless the model is generating
  an answer; then right after its ``turnComplete`` and the fresh handle that
  follows it; at the latest just before the deadline;
* on an unexpected close (1011, 1006, network) does the same at once, with
  jittered exponential backoff inside a total budget; 1007/1008 mean a
  configuration error, which no retry fixes;
* when resuming is impossible (no handle, handle refused, budget spent) opens
  a fresh session whose system prompt carries the conversation so far;
* sends the caller's unanswered speech again on the new connection (a
  question is answered only once its answer's ``turnComplete`` came), and
  holds audio spoken during the swap (up to ~2 s) until ``setupComplete``;
* when the swap cut an answer short, asks the new connection to finish it
  from what the caller already heard (the output transcription);
* queues every other message (text, ``clientContent``, tool answers) while no
  connection can take it and sends them in order after ``setupComplete``; a
  tool answer for a call the old connection made reaches the new one as text
  it can speak about, since a resumed session does not know that call;
* watches for the known Gemini stall: the caller finished, no answer comes;
  it nudges with a short text, then reconnects.

When none of that works, ``receive()`` raises ``GeminiLinkLost`` and the call
ends with the spoken apology.

Why one module of ~500 lines: the decisions are already pure objects elsewhere
(``link_policy.py``: when to swap, backoff, stalls; ``outbox.py``: what waits for a
connection); what is left is the one I/O sequence of a swap, which reads best whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import time
from collections.abc import Awaitable, Callable
from enum import Enum, StrEnum
from typing import Protocol

from websockets.exceptions import ConnectionClosed

from .client import text_input_message
from .endpoint import GeminiEndpoint
from .link_policy import Backoff, LinkPolicy, StallAction, StallWatch, SwapDecision, SwapTiming
from .outbox import Outbox, Outgoing
from .session import CONFIG_CLOSE_CODES, GeminiSession, GeminiSetupError
from .wire import FunctionResponse, ServerMessage, SessionConfig

log = logging.getLogger(__name__)

SEND_TIMEOUT_S = 5.0  # a socket that will not take a message for this long is stuck
NUDGE_TEXT = "(The caller has finished speaking and is waiting for your answer.)"
RESUME_NOTE = (
    "\n\nThis phone call is already in progress: the connection was renewed. Do not greet "
    "the caller again; carry on from where the conversation was. The conversation so far:\n"
)
# What the caller heard of an answer is quoted so the model can pick up after it.
CONTINUE_NOTE = (
    "(The connection was renewed while you were answering. The caller already heard you say: "
    '"{heard}" Continue your answer from exactly there, without repeating it.)'
)
RESTART_NOTE = (
    "(The connection was renewed while you were answering; the caller heard only the start "
    "of your answer. Answer their last question again, briefly.)"
)


class LinkState(StrEnum):
    """The session's states, plus the swap between two of them (what the dashboard shows)."""

    IDLE = "idle"
    CONNECTING = "connecting"
    OPEN = "open"
    RECONNECTING = "reconnecting"
    CLOSED = "closed"
    FAILED = "failed"


class SwapReason(Enum):
    """Why the link changed connections (the reconnect metric's label)."""

    GO_AWAY = "goAway"
    CLOSED = "closed"
    STALL = "stall"


@dataclasses.dataclass(frozen=True)
class PlannedSwap:
    """A swap the supervisor decided on: why (the metric's label) and what to log."""

    reason: SwapReason
    detail: str


class GeminiLinkLost(Exception):
    """No connection to Gemini could be restored; ``reason`` is safe to log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class CallerTurns(Protocol):
    """What the link must know of the caller's questions (the call's ``TurnState``)."""

    @property
    def model_generating(self) -> bool: ...

    @property
    def answer_started(self) -> bool: ...

    @property
    def has_unanswered(self) -> bool: ...

    def unanswered_audio(self) -> list[bytes]: ...

    def on_model_turn_cut(self) -> None: ...

    def restart_wait(self) -> None: ...

    def waiting_since(self) -> float | None: ...


class Conversation(Protocol):
    """What the link must know of what was said (the call's ``Transcript``)."""

    def open_answer(self) -> str:
        """What the model has said of the answer it has not finished."""
        ...

    def summary(self) -> str: ...


# Opens (and sets up) one connection with a config, within a setup timeout.
SessionOpener = Callable[[SessionConfig, float], Awaitable[GeminiSession]]


def session_opener(endpoint: GeminiEndpoint) -> SessionOpener:
    """Real connections to ``endpoint``."""

    async def open_session(config: SessionConfig, setup_timeout: float) -> GeminiSession:
        session = GeminiSession(endpoint, config, setup_timeout=setup_timeout)
        await session.open()
        return session

    return open_session


@dataclasses.dataclass
class LinkEvents:
    """Hooks the call uses to keep its own state and metrics in step."""

    on_reconnected: Callable[[SwapReason, float, bool], None] = lambda reason, gap_s, resumed: None
    on_nudge: Callable[[], None] = lambda: None


class GeminiLink:
    def __init__(
        self,
        open_session: SessionOpener,
        config: SessionConfig,
        *,
        setup_timeout: float,
        turns: CallerTurns,
        transcript: Conversation,
        policy: LinkPolicy | None = None,
        events: LinkEvents | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._open_session = open_session
        self._config = config
        self._setup_timeout = setup_timeout
        self._turns = turns
        self._transcript = transcript
        self._policy = policy or LinkPolicy()
        self._events = events or LinkEvents()
        self._rng = rng or random.Random()
        self._clock = clock
        self._timing = SwapTiming(clock)
        self._stall = StallWatch(self._policy)
        self._session: GeminiSession | None = None
        self._outbox = Outbox()  # what waits for a connection
        self._handle: str | None = None
        self._swap_lock = asyncio.Lock()
        self._swapping = False
        self._supervisor: asyncio.Task[None] | None = None
        self._go_away_arrived = asyncio.Event()
        self._lost: GeminiLinkLost | None = None
        self._closed = False
        self.reconnects = 0
        self.setup_seconds: float | None = None

    # --- state for operators ----------------------------------------------------------------

    @property
    def state(self) -> LinkState:
        if self._lost is not None:
            return LinkState.FAILED
        if self._swapping:
            return LinkState.RECONNECTING
        if self._session is None:
            return LinkState.CONNECTING
        return LinkState(self._session.state.value)

    @property
    def close_code(self) -> int | None:
        return self._session.close_code if self._session else None

    # --- opening and closing ----------------------------------------------------------------

    async def open(self) -> None:
        """The call's first connection; raises GeminiSetupError if Gemini is unavailable."""
        self._start(await self._open_session(self._config, self._setup_timeout))
        await self._send_queued()

    async def adopt(self, session: GeminiSession) -> None:
        """Take a session opened ahead of the call (pre-warmed) as the first connection."""
        self._start(session)
        await self._send_queued()

    async def open_moved(self, handle: str, *, answer_cut: bool, heard: str) -> bool:
        """The first connection of a call that moved here from another stream: resume the
        conversation that stream had (``handle``), else a fresh session told what was said;
        the unanswered question goes again, and an answer the move cut short is finished
        (``heard``: what of it the caller heard). Returns whether it resumed; raises
        GeminiLinkLost when no session opens within the reconnect budget."""
        started = self._clock()
        self._handle = handle or None
        replay = self._turns.unanswered_audio()
        session, resumed = await self._reconnect()
        await self._carry_over(session, replay, answer_cut, heard)
        self._turns.restart_wait()
        self._start(session)
        self.setup_seconds = self._clock() - started
        await self._send_queued()
        return resumed

    @property
    def resumption_handle(self) -> str:
        """The latest resumable handle Gemini gave ("" before the first)."""
        return self._handle or ""

    def _start(self, session: GeminiSession) -> None:
        self._session = session
        self._outbox.connection_opened()
        self.setup_seconds = session.setup_seconds
        self._supervisor = asyncio.create_task(self._supervise(), name="gemini_link_supervisor")

    async def close(self) -> None:
        self._closed = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        if self._session is not None:
            await self._session.close()

    # --- sending ----------------------------------------------------------------------------

    async def send_audio(self, pcm16k: bytes) -> None:
        if not self._swapping and self._session is not None:
            try:
                await self._session.send_audio(pcm16k)
                return
            except ConnectionClosed:
                # The reader sees the close and reconnects. A frame of an unanswered
                # question is replayed with it; any other is held until the new connection.
                if self._turns.has_unanswered:
                    return
        self._outbox.hold(pcm16k)

    async def send(self, message: str) -> None:
        """A non-audio message (text, clientContent). Never dropped: while no connection
        can take it, it waits, and goes out in order once one can."""
        await self._send_or_queue(message)

    async def send_tool_response(self, response: FunctionResponse) -> None:
        """The answer to one of the model's tool calls, on whatever connection is current."""
        await self._send_or_queue(response)

    async def _send_or_queue(self, outgoing: Outgoing) -> None:
        if self._lost is not None or self._closed:
            return  # the call is ending; nobody is left to hear it
        outbox = self._outbox
        if self._swapping or self._session is None or outbox.waiting:
            outbox.put(outgoing)
            return
        if not await self._deliver(self._session, outbox.wire_form(outgoing)):
            outbox.put(outgoing)  # the reader sees the close; the swap sends it again

    async def _deliver(self, session: GeminiSession, message: str) -> bool:
        """Send on ``session``; False if it closed first (the message did not go)."""
        try:
            async with asyncio.timeout(SEND_TIMEOUT_S):
                await session.send(message)
        except ConnectionClosed:
            return False
        except TimeoutError:
            # websockets had already written it to the transport: it goes out once the
            # socket drains, or the close that follows makes the reader reconnect.
            log.warning("Gemini has not taken a message within %.0f s", SEND_TIMEOUT_S)
        return True

    async def _send_queued(self) -> None:
        """Everything that waited for a connection, in order, on the current one."""
        session, outbox = self._session, self._outbox
        while outbox.waiting and session is not None:
            if not await self._deliver(session, outbox.wire_form(outbox.next())):
                return  # closed again: the next swap sends the rest
            outbox.sent()

    # --- receiving --------------------------------------------------------------------------

    async def receive(self) -> ServerMessage | None:
        """The next server message across reconnects; None once the link is closed.

        Raises GeminiLinkLost when no connection can be restored.
        """
        while True:
            session = self._session
            assert session is not None
            message = await session.receive()
            if session is not self._session:
                continue  # replaced meanwhile: what the old connection still had is void
            if message is not None:
                content = message.server_content
                # Model audio, fifty messages a second, carries nothing the link needs.
                if content is None or content.turn_complete or message.go_away is not None:
                    self._observe(message)
                return message
            if self._closed:
                return None
            if self._lost is not None:
                raise self._lost
            await self._recover(session)

    def _observe(self, message: ServerMessage) -> None:
        """What the link itself needs from the messages the call reads."""
        update = message.resumption_update
        if update is not None and update.resumable and update.new_handle:
            self._handle = update.new_handle
            self._timing.handle_arrived()
        content = message.server_content
        if content is not None and content.turn_complete:
            self._timing.turn_completed()
        for call in message.tool_calls:
            self._outbox.tool_called(call.id)
        for call_id in message.cancelled_tool_call_ids:
            self._outbox.tool_cancelled(call_id)
        if message.go_away is not None:
            self._timing.go_away(message.go_away.time_left_s)
            self._go_away_arrived.set()
            log.info("Gemini goAway: %.0f s left on this connection", message.go_away.time_left_s)

    async def _recover(self, dead: GeminiSession) -> None:
        """The connection ``dead`` ended without us closing it: reconnect, unless a swap did."""
        async with self._swap_lock:
            if self._lost is not None:
                raise self._lost
            if self._session is not dead or self._closed:
                return  # a planned swap already replaced it
            code, reason = dead.close_code, dead.close_reason
            if code in CONFIG_CLOSE_CODES:
                self._lost = GeminiLinkLost(f"Gemini closed with {code} {reason} (configuration)")
                raise self._lost
            log.warning("Gemini connection lost (%s %s): reconnecting", code, reason)
            await self._swap(SwapReason.CLOSED, f"closed {code}", already_closed=True)

    # --- swapping connections ---------------------------------------------------------------

    async def _swap(self, reason: SwapReason, detail: str, *, already_closed: bool = False) -> None:
        """Replace the connection. Caller audio is held meanwhile; must hold the swap lock."""
        assert self._session is not None
        started = self._clock()
        self._swapping = True
        # What the old connection leaves unfinished: the caller's unanswered speech as
        # Gemini had it (audio from now on is held apart), and the answer it was giving.
        cut_short = self._turns.answer_started
        heard = self._transcript.open_answer() if cut_short else ""
        replay = self._turns.unanswered_audio()
        self._turns.on_model_turn_cut()
        try:
            if not already_closed:
                await self._session.close()  # Gemini rejects a resume while the old one is open
            session, resumed = await self._reconnect()
            await self._carry_over(session, replay, cut_short, heard)
            self._turns.restart_wait()
            self._session = session
            self._outbox.connection_opened()
            self._timing.swapped()
            self._stall.reset()
            self.reconnects += 1
            gap = self._clock() - started
            log.info(
                "Gemini reconnected after %s in %.0f ms (%s%s%s)",
                detail,
                gap * 1000,
                "resumed" if resumed else "fresh session with the conversation so far",
                f", replayed {len(replay) * 20} ms of the caller's question" if replay else "",
                ", asked to finish the answer it was giving" if cut_short else "",
            )
            self._events.on_reconnected(reason, gap, resumed)
            await self._send_queued()
        finally:
            self._swapping = False

    async def _carry_over(
        self, session: GeminiSession, replay: list[bytes], cut_short: bool, heard: str
    ) -> None:
        """What the last connection left unfinished, onto ``session``: the caller's
        unanswered speech, audio held meanwhile, and the answer it was giving."""
        try:
            for chunk in replay:
                await session.send_audio(chunk)
            while held := self._outbox.take_held():  # more is held while these go
                for chunk in held:
                    await session.send_audio(chunk)
            if cut_short:
                note = CONTINUE_NOTE.format(heard=heard) if heard else RESTART_NOTE
                await session.send(text_input_message(note))
        except ConnectionClosed:
            pass  # the new connection died at once: the reader notices and recovers again
        except BaseException:
            await asyncio.shield(session.close())  # never leak the new socket
            raise

    async def _reconnect(self) -> tuple[GeminiSession, bool]:
        """Resume with the handle, with backoff inside the budget; else a fresh session."""
        backoff = Backoff(
            self._policy, self._clock() + self._policy.reconnect_budget_s, self._rng, self._clock
        )
        handle = self._handle
        while handle is not None:
            config = dataclasses.replace(self._config, resumption_handle=handle)
            try:
                return await self._attempt(config, backoff.deadline), True
            except GeminiSetupError as exc:
                if exc.is_config_error:
                    log.warning("Gemini refused the resumption handle: %s", exc.reason)
                    break
                log.warning("resume attempt failed: %s", exc.reason)
            if (pause := backoff.next_pause()) is None:
                break
            await asyncio.sleep(pause)
        return await self._fresh_session(backoff.deadline), False

    async def _fresh_session(self, deadline: float) -> GeminiSession:
        summary = self._transcript.summary()
        prompt = self._config.system_prompt + RESUME_NOTE + (summary or "(nothing yet)")
        config = dataclasses.replace(self._config, system_prompt=prompt, resumption_handle=None)
        # A fresh session gets at least one full attempt, even when resuming used the budget.
        deadline = max(deadline, self._clock() + self._setup_timeout)
        backoff = Backoff(self._policy, deadline, self._rng, self._clock)
        while True:
            try:
                return await self._attempt(config, deadline)
            except GeminiSetupError as exc:
                pause = None if exc.is_config_error else backoff.next_pause()
                if pause is None:
                    self._lost = GeminiLinkLost(f"no new Gemini session: {exc.reason}")
                    raise self._lost from None
            await asyncio.sleep(pause)

    async def _attempt(self, config: SessionConfig, deadline: float) -> GeminiSession:
        timeout = min(self._setup_timeout, max(0.2, deadline - self._clock()))
        return await self._open_session(config, timeout)

    # --- planned swaps and the stall watchdog -----------------------------------------------

    async def _supervise(self) -> None:
        while True:
            await self._pause(self._check_in(self._clock()))
            if self._swapping or self._lost is not None:
                continue
            action = self._next_action(self._clock())
            if action is StallAction.NUDGE:
                await self.send(text_input_message(NUDGE_TEXT))
                continue
            if not isinstance(action, PlannedSwap):
                continue
            async with self._swap_lock:
                if self._swapping or self._lost is not None or self._closed:
                    continue
                try:
                    await self._swap(action.reason, action.detail)
                except GeminiLinkLost:
                    # The reader finds the old session closed and raises the same loss.
                    log.error("Gemini link lost during a %s swap", action.detail)

    def _check_in(self, now: float) -> float:
        return self._stall.check_in(
            self._turns.waiting_since(), now, self._timing.deadline is not None
        )

    async def _pause(self, seconds: float) -> None:
        """Sleep ``seconds``, or less if a goAway arrives meanwhile."""
        self._go_away_arrived.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._go_away_arrived.wait()

    def _next_action(self, now: float) -> PlannedSwap | StallAction | None:
        """A swap to make now, a nudge to send, or nothing yet."""
        decision = self._timing.decide(self._turns.model_generating)
        if decision is SwapDecision.NOW:
            return PlannedSwap(SwapReason.GO_AWAY, "goAway")
        if decision is SwapDecision.FORCED:
            return PlannedSwap(SwapReason.GO_AWAY, "goAway (deadline, mid-answer)")
        waiting_since = self._turns.waiting_since()
        action = self._stall.decide(waiting_since, now)
        if action is StallAction.NUDGE:
            assert waiting_since is not None
            log.warning("no answer %.1f s after the caller finished: nudging", now - waiting_since)
            self._events.on_nudge()
            return StallAction.NUDGE
        if action is StallAction.REPLACE:
            return PlannedSwap(SwapReason.STALL, "stall")
        return None
