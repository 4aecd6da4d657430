"""Ending a call from the bridge's side, once its last words have been heard.

Three ways, one rule: the line closes only after the assistant's last words have played
at the caller (a model turn that began after the decision is complete, and Twilio's mark
echoes say it played), never on a timer:

* ``end_call`` (the model's tool): hang up through Twilio's REST API;
* ``transfer_call``: replace the call's TwiML with a ``<Dial>``; Twilio then ends the
  stream itself, so the bridge never closes it (the call could end before the dial);
* a server going away (drain): the assistant is asked to say goodbye, then the call is
  hung up.

Without REST credentials a hang-up closes the stream instead, and Twilio runs what
follows in the TwiML. It waits on events (``changed``: a mark echo, a turn's end), and
on the clock only for what the clock alone decides (``ModelTurns.recheck_in``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from enum import StrEnum

from ..twilio.rest import TwilioCallError, TwilioCalls
from .model_turns import ModelTurns
from .shared_call import EndReason

log = logging.getLogger(__name__)

AFTER_SPEECH_MAX_S = 20.0  # end_call / transfer act at the latest this long after the tool call


async def _nothing(reason: EndReason) -> None:
    pass


class EndAction(StrEnum):
    HANG_UP = "hang up"
    TRANSFER = "transfer"


class CallEnding:
    def __init__(
        self,
        turns: ModelTurns,
        *,
        call_sid: str,
        rest: TwilioCalls | None,
        say: Callable[[str], Awaitable[None]],
        close: Callable[[str], Awaitable[None]],
        ended: Callable[[EndReason], Awaitable[None]] = _nothing,
    ) -> None:
        self._turns = turns
        self._call_sid = call_sid
        self._rest = rest
        self._say = say  # an instruction to the model, as a clientContent turn
        self._close = close  # close the stream normally, with this reason
        self._ended = ended  # the call's shared record: ended by design, and how
        self.changed = asyncio.Event()  # set by the call when what was heard may have changed
        self.by_bridge = False  # the bridge ended the call (a drain), not the caller
        self._after_speech: asyncio.Task[None] | None = None

    # --- the model's tools (tools.call_control.CallControl) ------------------------------------

    def end_after_speech(self) -> None:
        self._act_after_speech(EndAction.HANG_UP, None)

    def transfer_after_speech(self, number: str) -> None:
        self._act_after_speech(EndAction.TRANSFER, number)

    def _act_after_speech(self, action: EndAction, number: str | None) -> None:
        if self._after_speech is not None:
            return  # the first decision stands
        self._after_speech = asyncio.create_task(
            self._after_speaking(action, number, time.monotonic()), name=f"after_speech:{action}"
        )

    async def _after_speaking(self, action: EndAction, number: str | None, asked: float) -> None:
        await self.until_spoken(asked, AFTER_SPEECH_MAX_S)
        transferred = action is EndAction.TRANSFER
        await self._ended(EndReason.TRANSFERRED if transferred else EndReason.END_CALL)
        if not await self._change_call(action, number) and action is EndAction.HANG_UP:
            await self._close("assistant ended the call")

    # --- the server going away -----------------------------------------------------------------

    async def goodbye(self, instruction: str, timeout_s: float) -> None:
        """Ask for a goodbye, wait until it has played, then hang up."""
        log.info("ending the call: asking the assistant to say goodbye")
        asked = time.monotonic()
        await self._say(instruction)
        await self.until_spoken(asked, timeout_s)
        self.by_bridge = True
        await self._ended(EndReason.DRAINED)
        if not await self._change_call(EndAction.HANG_UP, None):
            await self._close("goodbye")

    # --- the one wait ---------------------------------------------------------------------------

    async def until_spoken(self, asked: float, timeout_s: float) -> None:
        """Until the model's words after ``asked`` have been said and played (see
        ``ModelTurns.spoken_since``), or ``timeout_s``."""
        turns = self._turns
        try:
            async with asyncio.timeout(timeout_s):
                while not turns.spoken_since(asked):
                    self.changed.clear()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(turns.recheck_in(asked)):
                            await self.changed.wait()
        except TimeoutError:
            log.warning("last words not played within %.0f s; acting anyway", timeout_s)

    async def _change_call(self, action: EndAction, number: str | None) -> bool:
        """Through Twilio's REST API; False when it cannot be used or refused."""
        if self._rest is None:
            return False
        try:
            if action is EndAction.TRANSFER and number is not None:
                await self._rest.transfer(self._call_sid, number)
            else:
                await self._rest.hang_up(self._call_sid)
        except TwilioCallError as exc:
            log.error("Twilio REST %s failed: %s", action.value, exc.reason)
            return False
        log.info("Twilio: %s%s", action.value, f" to {number}" if number else "")
        return True

    async def close(self) -> None:
        """The call is over: what was still waiting to act never will."""
        if self._after_speech is not None:
            self._after_speech.cancel()
            await asyncio.gather(self._after_speech, return_exceptions=True)
