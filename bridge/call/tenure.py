"""One stream's tenure of its call in the shared store: taking it, keeping what a next
stream would resume from up to date, and letting it go.

The call says when what it would hand on has changed (``touch``: the caller finished
speaking, a turn completed, a new resumption handle); a task of the tenure writes it a
moment later, several changes in one write, and on a heartbeat besides (which renews the
record and writes it again whole if the store restarted empty). Nothing of it runs per
frame, and a store that is slow or away never holds up the call: writes happen beside it.

The record's writes are conditional on this stream still owning the call: once a later
stream has it (this server was cut off and the call moved on), ``lost`` is set and the
call ends its own side quietly.

The writer is stopped by asking it (``_stopping``), never by cancelling it mid-write: on
Python 3.11, a task cancelled inside a redis-py command can lose the cancellation and
never finish (measured with redis-py 6.4 to 8.1; 3.13 is not affected).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import replace

from ..state import StoreUnavailable
from .fleet import FleetCalls
from .shared_call import EndReason, ReleaseReason, SharedCall

log = logging.getLogger(__name__)

HEARTBEAT_S = 10.0
COALESCE_S = 0.1  # changes this close together go in one write
WRITER_STOP_S = 3.0  # a write under way is bounded by the store's own timeouts

# What the call would hand on now: the record with its conversation filled in, and the
# unanswered caller speech as μ-law (None when there is none).
Conversation = Callable[[SharedCall], tuple[SharedCall, bytes | None]]


class Tenure:
    def __init__(self, fleet: FleetCalls, record: SharedCall, conversation: Conversation) -> None:
        self._fleet = fleet
        self.record = record
        self._conversation = conversation
        self._dirty = asyncio.Event()
        self._stopping = asyncio.Event()
        self.lost = asyncio.Event()  # a later stream owns the call now
        self._writer: asyncio.Task[None] | None = None
        self.ended: EndReason | None = None  # the first end recorded stands

    @classmethod
    async def begin(
        cls, fleet: FleetCalls, call_sid: str, stream: int, caller: str, called: str,
        conversation: Conversation,
    ) -> Tenure | None:  # fmt: skip
        """The stream ``stream`` started: it owns the call now. None when the call has moved
        on to a later stream or ended (this stream was superseded)."""
        record = await fleet.take(call_sid, stream)
        if record is None:
            if await fleet.read(call_sid) is not None:
                return None
            record = await fleet.adopt(call_sid, caller, called)  # the store lost it
        return cls(fleet, record, conversation)

    @property
    def picks_up(self) -> bool:
        """A conversation began on an earlier stream: this one carries it on."""
        return bool(self.record.handle or self.record.turns or self.record.question)

    async def unanswered(self) -> bytes:
        return await self._fleet.question(self.record.call_sid) if self.record.question else b""

    def start(self) -> None:
        self._writer = asyncio.create_task(self._write_on_change(), name="tenure_writer")

    def touch(self) -> None:
        """What a next stream would resume from has changed."""
        self._dirty.set()

    async def _write_on_change(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(HEARTBEAT_S):
                    await self._dirty.wait()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(COALESCE_S):
                    await self._stopping.wait()
            if self._stopping.is_set():
                return  # release and end write what is left themselves
            self._dirty.clear()
            if not await self._save():
                log.warning("the call has moved on to another stream: ending this one")
                self.lost.set()
                return

    async def _save(self) -> bool:
        record, question = self._conversation(self.record)
        try:
            return await self._fleet.save(record, question)
        except StoreUnavailable as exc:
            log.warning("call state not saved: %s", exc.reason)
            return True  # a store that is away is not a sign the call moved

    async def release(self, reason: ReleaseReason) -> None:
        """The stream ends and the call goes on elsewhere: save it whole, then let go.
        A call that ended (``end_call``, say, then a deploy) stays ended."""
        await self._stop_writer()
        if self.ended is not None:
            return
        record, question = self._conversation(self.record)
        try:
            await self._fleet.save(record, question)
            await self._fleet.release(record, reason)
        except StoreUnavailable as exc:
            log.error("call could not be released for another stream: %s", exc.reason)
        self.record = replace(record, released=reason)

    async def end(self, reason: EndReason) -> None:
        """The call is over: whoever is asked next hangs up (or apologises). The first end
        stands (``end_call`` hangs up; the stop that follows is not the caller's doing)."""
        if self.ended is not None:
            return
        self.ended = reason
        await self._stop_writer()
        try:
            await self._fleet.end(self.record.call_sid, self.record.stream, reason)
        except StoreUnavailable as exc:
            log.error("call end not recorded: %s", exc.reason)

    async def close(self) -> None:
        await self._stop_writer()

    async def _stop_writer(self) -> None:
        writer, self._writer = self._writer, None
        if writer is None:
            return
        self._stopping.set()
        self._dirty.set()
        done, _ = await asyncio.wait({writer}, timeout=WRITER_STOP_S)
        if not done:  # a store that hangs past its own timeouts: do not wait on it
            log.warning("call state writer did not stop; cancelled")
            writer.cancel()
