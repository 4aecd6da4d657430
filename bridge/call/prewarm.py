"""Opening Gemini while Twilio is still connecting the stream.

The webhook answers in milliseconds, but Twilio then needs a few hundred more
to open the Media Stream. A session opened (and its greeting asked for) when
the webhook arrives is ready by then, so the caller hears the greeting sooner.
It is keyed by CallSid; if no stream claims it within the TTL it is closed.
A stream that lands on another instance simply opens its own session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from ..gemini.session import GeminiSession, GeminiSetupError, SetupFailure

log = logging.getLogger(__name__)


class Prewarm:
    def __init__(
        self, ttl_s: float, on_result: Callable[[str], None] = lambda result: None
    ) -> None:
        self._ttl = ttl_s
        self._on_result = on_result
        self._opening: dict[str, asyncio.Task[GeminiSession]] = {}
        self._expiries: dict[str, asyncio.TimerHandle] = {}
        self._closing: set[asyncio.Task[None]] = set()

    def start(self, call_sid: str, open_session: Callable[[], Awaitable[GeminiSession]]) -> None:
        if call_sid in self._opening:
            return

        async def opening() -> GeminiSession:
            return await open_session()

        self._opening[call_sid] = asyncio.create_task(opening(), name=f"prewarm:{call_sid}")
        loop = asyncio.get_running_loop()
        self._expiries[call_sid] = loop.call_later(self._ttl, self._expire, call_sid)

    async def claim(self, call_sid: str) -> GeminiSession | None:
        """The stream started: its session, once open; None if none was pre-warmed.

        Raises GeminiSetupError if the pre-warmed session failed: the caller has been
        waiting since the webhook, so that failure uses up the call-start budget.
        """
        task = self._opening.pop(call_sid, None)
        timer = self._expiries.pop(call_sid, None)
        if timer is not None:
            timer.cancel()
        if task is None:
            return None
        try:
            session = await task
        except GeminiSetupError:
            self._on_result("failed")
            raise
        except Exception as exc:  # the socket died while the greeting was sent
            self._on_result("failed")
            raise GeminiSetupError(
                f"pre-warmed session lost ({exc.__class__.__name__})", kind=SetupFailure.CLOSED
            ) from None
        self._on_result("used")
        return session

    def _expire(self, call_sid: str) -> None:
        task = self._opening.pop(call_sid, None)
        self._expiries.pop(call_sid, None)
        if task is None:
            return
        log.info("no stream came for call %s: closing its pre-warmed session", call_sid)
        self._on_result("expired")
        closer = asyncio.create_task(self._discard(task))
        self._closing.add(closer)
        closer.add_done_callback(self._closing.discard)

    @staticmethod
    async def _discard(task: asyncio.Task[GeminiSession]) -> None:
        task.cancel()
        with contextlib.suppress(Exception, asyncio.CancelledError):
            session = await task
            await session.close()

    async def close(self) -> None:
        for timer in self._expiries.values():
            timer.cancel()
        tasks = list(self._opening.values())
        self._opening.clear()
        self._expiries.clear()
        await asyncio.gather(
            *(self._discard(t) for t in tasks), *self._closing, return_exceptions=True
        )

    def __len__(self) -> int:
        return len(self._opening)
