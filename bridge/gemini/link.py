"""A call's link to Gemini Live that outlives any one connection.

Gemini always ends connections: about every ten minutes with ``goAway`` and
then close 1011, and now and then without warning. The caller must not
notice. So the link:

* keeps the latest resumable ``sessionResumptionUpdate`` handle;
* on ``goAway`` swaps to a new connection (same setup plus the handle) at a
  quiet moment — not while the model speaks, not while a caller's question is
  unanswered — or when the time left is nearly spent, closing the old socket
  first (Gemini refuses a resume while it is open);
* on an unexpected close (1011, 1006, network) does the same at once, with
  jittered exponential backoff inside a total budget; 1007/1008 mean a
  configuration error, which no retry fixes;
* when resuming is impossible (no handle, handle refused, budget spent) opens
  a fresh session whose system prompt carries the conversation so far;
* sends the caller's unanswered turn again on the new connection, and holds
  audio spoken during the swap (up to ~2 s) until ``setupComplete``;
* watches for the known Gemini stall: the caller finished, no answer comes;
  it nudges with a short text, then reconnects.

When none of that works, ``receive()`` raises ``GeminiLinkLost`` and the call
ends with the spoken apology.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import time
from collections import deque
from collections.abc import Callable

from websockets.exceptions import ConnectionClosed

from ..transcript import Transcript
from ..turn_state import TurnState
from .endpoint import GeminiEndpoint
from .protocol import ServerMessage, SessionConfig, text_input_message
from .session import CONFIG_CLOSE_CODES, GeminiSession, GeminiSetupError

log = logging.getLogger(__name__)

SEND_TIMEOUT_S = 5.0  # a socket that will not take a message for this long is stuck
SWAP_BUFFER_BYTES = 2 * 32000  # 2 s of 16 kHz PCM16 held during a reconnect
GO_AWAY_MARGIN_S = 3.0  # swap no later than this before Gemini's deadline
NUDGE_TEXT = "(The caller has finished speaking and is waiting for your answer.)"
RESUME_NOTE = (
    "\n\nThis phone call is already in progress: the connection was renewed. Do not greet "
    "the caller again; carry on from where the conversation was. The conversation so far:\n"
)


class GeminiLinkLost(Exception):
    """No connection to Gemini could be restored; ``reason`` is safe to log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclasses.dataclass
class LinkPolicy:
    reconnect_budget_s: float = 5.0
    first_backoff_s: float = 0.1
    max_backoff_s: float = 1.5
    stall_timeout_s: float = 6.0  # caller finished, no model audio: nudge; twice: reconnect
    supervise_every_s: float = 0.1  # while a goAway waits for a quiet moment
    idle_check_s: float = 1.0  # otherwise; a stall's deadline is slept to exactly


@dataclasses.dataclass
class LinkEvents:
    """Hooks the call uses to keep its own state and metrics in step."""

    on_reconnected: Callable[[str, float, bool], None] = lambda reason, gap_s, resumed: None
    on_nudge: Callable[[], None] = lambda: None


class GeminiLink:
    def __init__(
        self,
        endpoint: GeminiEndpoint,
        config: SessionConfig,
        *,
        setup_timeout: float,
        turns: TurnState,
        transcript: Transcript,
        policy: LinkPolicy | None = None,
        events: LinkEvents | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._endpoint = endpoint
        self._config = config
        self._setup_timeout = setup_timeout
        self._turns = turns
        self._transcript = transcript
        self._policy = policy or LinkPolicy()
        self._events = events or LinkEvents()
        self._rng = rng or random.Random()
        self._session: GeminiSession | None = None
        self._handle: str | None = None
        self._go_away_deadline: float | None = None
        self._swap_lock = asyncio.Lock()
        self._swapping = False
        self._held: deque[bytes] = deque()
        self._held_bytes = 0
        self._nudged_at: float | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._go_away_arrived = asyncio.Event()
        self._lost: GeminiLinkLost | None = None
        self._closed = False
        self.reconnects = 0
        self.setup_seconds: float | None = None

    # --- state for operators ----------------------------------------------------------------

    @property
    def state(self) -> str:
        if self._lost is not None:
            return "failed"
        if self._swapping:
            return "reconnecting"
        return self._session.state if self._session is not None else "connecting"

    @property
    def close_code(self) -> int | None:
        return self._session.close_code if self._session else None

    # --- opening and closing ----------------------------------------------------------------

    async def open(self) -> None:
        """The call's first connection; raises GeminiSetupError if Gemini is unavailable."""
        self._session = await self._connect(self._config)
        self.setup_seconds = self._session.setup_seconds
        self._supervisor = asyncio.create_task(self._supervise(), name="gemini_link_supervisor")

    def adopt(self, session: GeminiSession) -> None:
        """Take a session opened ahead of the call (pre-warmed) as the first connection."""
        self._session = session
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

    async def _connect(self, config: SessionConfig) -> GeminiSession:
        session = GeminiSession(self._endpoint, config, setup_timeout=self._setup_timeout)
        await session.open()
        return session

    # --- sending ----------------------------------------------------------------------------

    async def send_audio(self, pcm16k: bytes) -> None:
        if not self._swapping and self._session is not None:
            try:
                await self._session.send_audio(pcm16k)
                return
            except ConnectionClosed:
                # The reader sees the close and reconnects. A frame of the caller's turn
                # is replayed with the turn; any other is held until the new connection.
                if self._turns.in_turn:
                    return
        self._hold(pcm16k)

    async def send(self, message: str) -> None:
        """A non-audio message (text, clientContent, toolResponse). Dropped during a swap."""
        if self._swapping or self._session is None:
            log.warning("dropped a message to Gemini during a reconnect")
            return
        try:
            async with asyncio.timeout(SEND_TIMEOUT_S):
                await self._session.send(message)
        except ConnectionClosed:
            pass  # the reader sees the close and reconnects
        except TimeoutError:
            log.warning("Gemini did not take a message within %.0f s; dropped it", SEND_TIMEOUT_S)

    def _hold(self, pcm16k: bytes) -> None:
        self._held.append(pcm16k)
        self._held_bytes += len(pcm16k)
        while self._held_bytes > SWAP_BUFFER_BYTES:
            self._held_bytes -= len(self._held.popleft())

    # --- receiving --------------------------------------------------------------------------

    async def receive(self) -> ServerMessage | None:
        """The next server message across reconnects; None once the link is closed.

        Raises GeminiLinkLost when no connection can be restored.
        """
        while True:
            session = self._session
            assert session is not None
            message = await session.receive()
            if message is not None:
                if message.resumption_update is not None:
                    update = message.resumption_update
                    if update.resumable and update.new_handle:
                        self._handle = update.new_handle
                if message.go_away is not None:
                    self._go_away_deadline = time.monotonic() + message.go_away.time_left_s
                    self._go_away_arrived.set()
                    log.info(
                        "Gemini goAway: %.0f s left on this connection", message.go_away.time_left_s
                    )
                return message
            if self._closed:
                return None
            if self._lost is not None:
                raise self._lost
            await self._recover(session)

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
            await self._swap(f"closed {code}", already_closed=True)

    # --- swapping connections ---------------------------------------------------------------

    async def _swap(self, reason: str, *, already_closed: bool = False) -> None:
        """Replace the connection. Caller audio is held meanwhile; must hold the swap lock."""
        assert self._session is not None
        started = time.monotonic()
        self._swapping = True
        # The caller's unanswered turn as Gemini had it; audio from now on is held apart.
        replay = self._turns.unanswered_audio()
        try:
            if not already_closed:
                await self._session.close()  # Gemini rejects a resume while the old one is open
            session, resumed = await self._reconnect()
            try:
                for chunk in replay:
                    await session.send_audio(chunk)
                while self._held:
                    chunk = self._held.popleft()
                    await session.send_audio(chunk)
            except ConnectionClosed:
                pass  # the new connection died at once: the reader notices and recovers again
            except BaseException:
                await asyncio.shield(session.close())  # never leak the new socket
                raise
            self._held_bytes = 0
            self._turns.restart_wait()
            self._session = session
            self._go_away_deadline = None
            self._nudged_at = None
            self.reconnects += 1
            gap = time.monotonic() - started
            log.info(
                "Gemini reconnected after %s in %.0f ms (%s%s)",
                reason,
                gap * 1000,
                "resumed" if resumed else "fresh session with the conversation so far",
                f", replayed {len(replay) * 20} ms of the caller's turn" if replay else "",
            )
            self._events.on_reconnected(reason, gap, resumed)
        finally:
            self._swapping = False

    async def _reconnect(self) -> tuple[GeminiSession, bool]:
        """Resume with the handle, with backoff inside the budget; else a fresh session."""
        deadline = time.monotonic() + self._policy.reconnect_budget_s
        delay = self._policy.first_backoff_s
        handle = self._handle
        while handle is not None:
            config = dataclasses.replace(self._config, resumption_handle=handle)
            try:
                return await self._attempt(config, deadline), True
            except GeminiSetupError as exc:
                if exc.is_config_error:
                    log.warning("Gemini refused the resumption handle: %s", exc.reason)
                    break
                log.warning("resume attempt failed: %s", exc.reason)
            if not await self._backoff(delay, deadline):
                break
            delay = min(delay * 2, self._policy.max_backoff_s)
        return await self._fresh_session(deadline), False

    async def _fresh_session(self, deadline: float) -> GeminiSession:
        summary = self._transcript.summary()
        prompt = self._config.system_prompt + RESUME_NOTE + (summary or "(nothing yet)")
        config = dataclasses.replace(self._config, system_prompt=prompt, resumption_handle=None)
        # A fresh session gets at least one full attempt, even when resuming used the budget.
        deadline = max(deadline, time.monotonic() + self._setup_timeout)
        delay = self._policy.first_backoff_s
        while True:
            try:
                return await self._attempt(config, deadline)
            except GeminiSetupError as exc:
                if exc.is_config_error or not await self._backoff(delay, deadline):
                    self._lost = GeminiLinkLost(f"no new Gemini session: {exc.reason}")
                    raise self._lost from None
            delay = min(delay * 2, self._policy.max_backoff_s)

    async def _attempt(self, config: SessionConfig, deadline: float) -> GeminiSession:
        timeout = min(self._setup_timeout, max(0.2, deadline - time.monotonic()))
        session = GeminiSession(self._endpoint, config, setup_timeout=timeout)
        await session.open()
        return session

    async def _backoff(self, delay: float, deadline: float) -> bool:
        """Sleep a jittered ``delay``; False when the budget would run out first."""
        pause = delay * self._rng.uniform(0.5, 1.5)
        if time.monotonic() + pause >= deadline:
            return False
        await asyncio.sleep(pause)
        return True

    # --- planned swaps and the stall watchdog -----------------------------------------------

    async def _supervise(self) -> None:
        while True:
            await self._pause(self._check_in(time.monotonic()))
            if self._swapping or self._lost is not None:
                continue
            action = self._next_action(time.monotonic())
            if action == "nudge":
                await self.send(text_input_message(NUDGE_TEXT))
                continue
            if action is None:
                continue
            async with self._swap_lock:
                if self._swapping or self._lost is not None or self._closed:
                    continue
                try:
                    await self._swap(action)
                except GeminiLinkLost:
                    # The reader finds the old session closed and raises the same loss.
                    log.error("Gemini link lost during a %s swap", action)

    def _check_in(self, now: float) -> float:
        """Seconds until the next check. Polling every call ten times a second cost
        ~1.5% of the server's CPU in the benchmark; only a goAway needs it."""
        policy = self._policy
        if self._go_away_deadline is not None:
            return policy.supervise_every_s
        waiting_since = self._turns.waiting_since()
        if waiting_since is None:
            return policy.idle_check_s
        due = (self._nudged_at if self._nudged_at is not None else waiting_since) + (
            policy.stall_timeout_s
        )
        return min(policy.idle_check_s, max(policy.supervise_every_s, due - now))

    async def _pause(self, seconds: float) -> None:
        """Sleep ``seconds``, or less if a goAway arrives meanwhile."""
        self._go_away_arrived.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._go_away_arrived.wait()

    def _next_action(self, now: float) -> str | None:
        """ "goAway" or "stall" (swap now), "nudge", or None."""
        deadline = self._go_away_deadline
        if deadline is not None and (self._turns.is_quiet or now >= deadline - GO_AWAY_MARGIN_S):
            return "goAway"
        waiting_since = self._turns.waiting_since()
        if waiting_since is None:
            self._nudged_at = None
            return None
        stall = self._policy.stall_timeout_s
        if self._nudged_at is None:
            if now - waiting_since < stall:
                return None
            self._nudged_at = now
            log.warning("no answer %.1f s after the caller finished: nudging", now - waiting_since)
            self._events.on_nudge()
            return "nudge"
        return "stall" if now - self._nudged_at >= stall else None
