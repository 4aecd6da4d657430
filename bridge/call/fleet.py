"""The calls of a fleet in its shared store: who answered, which stream owns what, and
what a new stream resumes from (``shared_call.py`` has the record and its rules).

Every operation here is a few store round trips at a call's edges (its webhook, its
stream's start and end, a turn's end, a heartbeat of seconds): nothing runs per frame.
One server with no ``STATE_URL`` keeps all of it in its own memory, the same way.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from ..state import Claim, StateStore
from .shared_call import (
    AfterStream,
    CallStatus,
    EndReason,
    ReleaseReason,
    SharedCall,
    after_stream,
)

log = logging.getLogger(__name__)

CALL_TTL_S = 3600.0  # renewed by the owner's heartbeat; a call's record outlives it a while
ENDED_TTL_S = 600.0  # an ended call's record, for late action requests
ANSWERED_TTL_S = 24 * 3600.0  # a CallSid answered once is never answered again
ALIVE_TTL_S = 1.0  # an instance's presence; written every ALIVE_EVERY_S
ALIVE_EVERY_S = 0.3
# While the shared store is away, a stream may reach an instance that cannot check its
# token and is refused (docs/scaling.md); Twilio then asks again. These tries are extra.
OUTAGE_TRIES = 10
ACTION_WAIT_S = 3.0  # how long an action request waits for the owner to say
ACTION_POLL_S = 0.05


@dataclass(frozen=True, slots=True)
class NextStep:
    """What the action request answers, and for RECONNECT the stream to hand out."""

    action: AfterStream
    record: SharedCall | None = None


class FleetCalls:
    def __init__(
        self,
        store: StateStore,
        instance: str,
        *,
        max_moves: int,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.instance = instance
        self.max_moves = max_moves
        self._wall = wall_clock

    @property
    def shared(self) -> bool:
        """Other instances see this store: a call can move between them."""
        return self.store.shared

    # --- keys -----------------------------------------------------------------------------------

    @staticmethod
    def _call(call_sid: str) -> str:
        return f"call:{call_sid}"

    @staticmethod
    def _question(call_sid: str) -> str:
        return f"question:{call_sid}"

    # --- the webhook ----------------------------------------------------------------------------

    async def answer(self, call_sid: str, caller: str, called: str) -> Claim:
        """A webhook for ``call_sid``: TAKEN when the CallSid was answered before (a replay).
        Otherwise its record is written: stream 1, on its way."""
        claim = await self.store.claim(f"answered:{call_sid}", ANSWERED_TTL_S)
        if claim is Claim.TAKEN:
            return claim
        record = SharedCall(call_sid, caller, called, since=self._wall())
        await self.store.set_fields(self._call(call_sid), record.fields(), CALL_TTL_S)
        return claim

    async def claim_token(self, key: str, ttl_s: float) -> Claim:
        return await self.store.claim(f"token:{key}", ttl_s)

    # --- a stream's life ------------------------------------------------------------------------

    async def take(self, call_sid: str, stream: int) -> SharedCall | None:
        """The stream ``stream`` started here: it owns the call now. None when the call has
        moved on to a later stream (this one was superseded) or ended."""
        key = self._call(call_sid)
        fields = {"owner": self.instance, "status": CallStatus.LIVE.value}
        fields["since"] = f"{self._wall():.3f}"
        for status in (CallStatus.ANSWERED, CallStatus.RELEASED, CallStatus.LIVE):
            if await self.store.set_fields(
                key, fields, CALL_TTL_S, only_if={"stream": str(stream), "status": status.value}
            ):
                return await self.read(call_sid)
        return None

    async def adopt(self, call_sid: str, caller: str, called: str) -> SharedCall:
        """A first stream whose record is gone (the store restarted empty): it starts anew."""
        record = SharedCall(
            call_sid, caller, called, status=CallStatus.LIVE, owner=self.instance,
            since=self._wall(),
        )  # fmt: skip
        await self.store.set_fields(self._call(call_sid), record.fields(), CALL_TTL_S)
        return record

    async def read(self, call_sid: str) -> SharedCall | None:
        fields = await self.store.get_fields(self._call(call_sid))
        if not fields:
            return None
        try:
            return SharedCall.from_fields(call_sid, fields)
        except ValueError as exc:
            log.error("call %s: %s", call_sid, exc)
            return None

    def _owned(self, record: SharedCall) -> dict[str, str]:
        return {"stream": str(record.stream), "owner": self.instance}

    async def save(self, record: SharedCall, question: bytes | None) -> bool:
        """The conversation so far, as the owner has it (``question``: the unanswered
        caller speech as μ-law, or None when there is none). False: the call is not this
        stream's any more (it moved on); a record that vanished (the store restarted empty)
        is written again whole."""
        if question is not None:
            await self.store.put_blob(self._question(record.call_sid), question, CALL_TTL_S)
        fields = record.conversation_fields()
        key = self._call(record.call_sid)
        if await self.store.set_fields(key, fields, CALL_TTL_S, only_if=self._owned(record)):
            return True
        if await self.store.get_fields(key) is None:
            await self.store.set_fields(key, record.fields(), CALL_TTL_S)
            return True
        return False

    async def question(self, call_sid: str) -> bytes:
        return await self.store.get_blob(self._question(call_sid)) or b""

    async def release(self, record: SharedCall, reason: ReleaseReason) -> bool:
        """The stream ends and the call goes on: the next action request moves it. Only a
        live call is released: one that ended stays ended."""
        fields = {
            "status": CallStatus.RELEASED.value,
            "released": reason.value,
            "since": f"{self._wall():.3f}",
        }
        condition = {**self._owned(record), "status": CallStatus.LIVE.value}
        return await self.store.set_fields(
            self._call(record.call_sid), fields, CALL_TTL_S, only_if=condition
        )

    async def end(self, call_sid: str, stream: int, reason: EndReason) -> None:
        """The call ended by design, as far as the stream ``stream`` can tell."""
        fields = {"status": CallStatus.ENDED.value, "ended": reason.value}
        fields["since"] = f"{self._wall():.3f}"
        key = self._call(call_sid)
        if not await self.store.set_fields(
            key, fields, ENDED_TTL_S, only_if={"stream": str(stream)}
        ):
            if await self.store.get_fields(key) is not None:
                return  # a later stream has the call: its end is not this one's to say
            # No record (the store restarted empty, or this process holds none while it
            # is away): the end must still stand, or the next action request revives it.
            ended = SharedCall(call_sid, "", "", stream=stream, status=CallStatus.ENDED)
            record = replace(ended, ended=reason, since=self._wall())
            await self.store.set_fields(key, record.fields(), ENDED_TTL_S)
        await self.store.delete(self._question(call_sid))

    # --- the fleet's members ----------------------------------------------------------------------

    async def heartbeat(self) -> None:
        """This instance is alive (ALIVE_TTL_S); only a shared store needs to be told."""
        if self.shared:
            await self.store.put_blob(f"alive:{self.instance}", b"1", ALIVE_TTL_S)

    async def is_alive(self, instance: str) -> bool:
        if not instance:
            return False
        if instance == self.instance or not self.shared:
            return instance == self.instance
        return await self.store.get_blob(f"alive:{instance}") is not None

    # --- Twilio's action request --------------------------------------------------------------

    async def after_stream(
        self, call_sid: str, ended_stream: int, caller: str, called: str,
        *, owner_stuck: bool = False,
    ) -> NextStep:  # fmt: skip
        """What the call's ``<Connect action>`` request answers once its stream
        ``ended_stream`` ended. For RECONNECT the record has been moved to the next stream
        already (one winner among concurrent requests). ``owner_stuck``: Twilio has asked
        again and again while the owner never said how its stream ended."""
        deadline = time.monotonic() + ACTION_WAIT_S
        while True:
            record = await self.read(call_sid)
            if record is not None and record.stream < ended_stream and self.store.degraded:
                # While the shared store is away, another instance handed out later streams
                # of this call: what this process holds of it is behind. Start it afresh.
                record = None
            alive = record is not None and not owner_stuck and await self.is_alive(record.owner)
            action = after_stream(
                record,
                ended_stream=ended_stream,
                owner_alive=alive,
                max_moves=self.max_moves + (OUTAGE_TRIES if self.store.degraded else 0),
            )
            if action is AfterStream.WAIT:
                if time.monotonic() >= deadline:
                    return NextStep(AfterStream.WAIT, record)
                await asyncio.sleep(ACTION_POLL_S)
                continue
            if action is not AfterStream.RECONNECT:
                if (
                    action is AfterStream.APOLOGY
                    and record
                    and record.status is not CallStatus.ENDED
                ):
                    await self.end(call_sid, record.stream, EndReason.MOVES_EXHAUSTED)
                return NextStep(action, record)
            if record is None:
                # No record: the store lost it, or it expired and this is a replay of an
                # old request. Each stream of a call is handed on once, ever.
                if await self.store.claim(f"moved:{call_sid}:{ended_stream}", ANSWERED_TTL_S) is (
                    Claim.TAKEN
                ):
                    return NextStep(AfterStream.STALE, None)
                moved = SharedCall(
                    call_sid, caller, called, stream=ended_stream + 1, since=self._wall(),
                    moves=ended_stream,
                )  # fmt: skip
                await self.store.set_fields(self._call(call_sid), moved.fields(), CALL_TTL_S)
                return NextStep(AfterStream.RECONNECT, moved)
            moved = record.next_stream(self._wall())
            handover = {k: v for k, v in moved.fields().items() if k not in _CONVERSATION}
            condition = {"stream": str(record.stream), "status": record.status.value}
            if await self.store.set_fields(
                self._call(call_sid), handover, CALL_TTL_S, only_if=condition
            ):
                # Remembered past the record's life: a replay of this request then is stale.
                await self.store.claim(f"moved:{call_sid}:{ended_stream}", ANSWERED_TTL_S)
                return NextStep(AfterStream.RECONNECT, moved)
            # Another request moved it first, or its owner wrote meanwhile: look again.


_CONVERSATION = frozenset(SharedCall("", "", "").conversation_fields())
