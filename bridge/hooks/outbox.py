"""Reports on their way to CALL_REPORT_URL: kept in the fleet's store until delivered.

A report is put in the outbox (``outbox:<CallSid>``, a JSON envelope, scheduled in the
store's ``outbox`` queue at the time its next attempt is due) the moment its call is
over, and delivered beside the calls, never in their way: each server runs one
delivery loop that reads the envelopes due (never a scan), claims one attempt of one report
(``sending:<CallSid>:<attempt>``, so two servers never send the same attempt), POSTs it
signed, and on success removes it. A receiver that fails or does not answer gets the
report again after 1, 2, 4, ... s (at most 5 minutes apart) until CALL_REPORT_RETRY_FOR
has passed; then it is given up, logged with its CallSid.

With STATE_URL the outbox is Redis: a report not yet delivered when its server stops
(a deploy, a crash: its claim lapses after ``LEASE_S``) is sent by the next server's
loop. Without it, one server keeps it in memory and tries once more on shutdown.

Delivery is at least once: a server that dies between the receiver's 2xx and removing
the envelope sends it again later. Receivers keep the ``call_sid`` of reports they have
processed (as with Stripe's and Twilio's webhooks).

``hold_until``: a report may wait for something that arrives after its call ends (the
recording's URL); until then, ``complete`` is asked whether it is ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

from ..state import Claim, StateStore, StoreUnavailable
from .signed_post import HookAnswer, post_signed

log = logging.getLogger(__name__)

POLL_S = 1.0  # how often the outbox is looked at for reports due (and on every new one)
LEASE_S = 60.0  # one attempt's claim: after a crash, another server retries then
MAX_BACKOFF_S = 300.0
POST_TIMEOUT_S = 10.0
PARALLEL = 4  # reports sent at once by one server
QUEUE = "outbox"
BATCH = 100  # envelopes read per look at the queue
FLUSH_S = 5.0  # on shutdown, how long reports due are still tried


@dataclass(frozen=True, slots=True)
class Envelope:
    key: str  # the CallSid
    payload: dict[str, Any]
    attempts: int = 0
    next_at: float = 0.0  # wall time of the next attempt
    give_up_at: float = 0.0
    hold_until: float = 0.0  # until then, ``complete`` may still add to it

    def text(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_text(cls, text: str) -> Envelope:
        data = json.loads(text)
        return cls(**data)


def backoff_s(attempts: int) -> float:
    """After ``attempts`` failed tries: 1, 2, 4, ... s, at most MAX_BACKOFF_S."""
    return float(min(2 ** max(0, attempts - 1), MAX_BACKOFF_S))


# Asked of a held report: its payload, completed (True when nothing more will come).
Complete = Callable[[Envelope, bool], Awaitable[tuple[dict[str, Any], bool]]]
Post = Callable[[str, Any, str, float, dict[str, str]], Awaitable[HookAnswer]]
Counted = Callable[[str], None]


async def _ready(envelope: Envelope, final: bool) -> tuple[dict[str, Any], bool]:
    return envelope.payload, True


def _nothing(result: str) -> None:
    pass


class ReportOutbox:
    def __init__(
        self,
        store: StateStore,
        url: str | None,
        secret: str,
        retry_for_s: float,
        *,
        complete: Complete = _ready,
        post: Post = post_signed,
        counted: Counted = _nothing,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self.url = url
        self._secret = secret
        self._retry_for_s = retry_for_s
        self.complete = complete
        self._post = post
        self._counted = counted  # delivered | failed | given_up | queued
        self._wall = wall_clock
        self._wake = asyncio.Event()
        self._sending: set[str] = set()  # keys with an attempt under way here
        self._attempts: set[asyncio.Task[None]] = set()  # owned by ``run``

    @property
    def enabled(self) -> bool:
        return self.url is not None

    @staticmethod
    def _key(call_sid: str) -> str:
        return f"outbox:{call_sid}"

    async def put(self, key: str, payload: dict[str, Any], hold_s: float = 0.0) -> None:
        """Queue ``payload`` for delivery (a store write; the POST happens in the loop)."""
        now = self._wall()
        envelope = Envelope(
            key, payload, 0, now, now + self._retry_for_s + hold_s, now + hold_s if hold_s else 0
        )
        await self._keep(envelope)
        self._counted("queued")
        self._wake.set()

    async def _keep(self, envelope: Envelope) -> None:
        key = self._key(envelope.key)
        await self._store.put_blob(key, envelope.text().encode(), self._ttl())
        await self._store.schedule(QUEUE, key, envelope.next_at)

    async def _drop(self, envelope: Envelope) -> None:
        key = self._key(envelope.key)
        await self._store.delete(key)
        await self._store.unschedule(QUEUE, key)

    def _ttl(self) -> float:
        return self._retry_for_s + MAX_BACKOFF_S + 3600.0

    async def pending(self, until: float = float("inf"), limit: int = BATCH) -> list[Envelope]:
        """The envelopes due by ``until`` (all of them by default), earliest first."""
        found = []
        for key in await self._store.due(QUEUE, until, limit):
            data = await self._store.get_blob(key)
            if data is None:  # expired, or delivered by another server meanwhile
                await self._store.unschedule(QUEUE, key)
                continue
            try:
                found.append(Envelope.from_text(data.decode()))
            except (ValueError, TypeError) as exc:
                log.error("unreadable report in the outbox (%s): dropped", exc.__class__.__name__)
                await self._store.unschedule(QUEUE, key)
        return found

    # --- the delivery loop ----------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver what is due, every POLL_S and whenever a report is put, until ``stop``.
        Each attempt is a task of its own (PARALLEL at most): a receiver slow to answer
        one report holds up no other. On ``stop``, attempts under way are waited for."""
        while not stop.is_set():
            self._wake.clear()
            try:
                await self._start_due()
            except StoreUnavailable as exc:
                log.warning("report outbox not read: %s", exc.reason)
            except Exception:
                log.exception("report delivery failed")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(POLL_S):
                    waits = [asyncio.ensure_future(e.wait()) for e in (stop, self._wake)]
                    try:
                        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        for wait in waits:
                            wait.cancel()
        if self._attempts:  # each bounded by its POST's timeout and the store's
            await asyncio.wait(list(self._attempts), timeout=POST_TIMEOUT_S + 2)

    async def _start_due(self) -> None:
        if not self.enabled:
            return
        now = self._wall()
        due = [e for e in await self.pending(now) if e.key not in self._sending]
        due.sort(key=lambda e: e.hold_until > now)  # stable: the ready first, then the held
        for envelope in due[: max(0, PARALLEL - len(self._attempts))]:
            self._sending.add(envelope.key)
            task = asyncio.create_task(self._attempt_logged(envelope), name="report_attempt")
            self._attempts.add(task)
            task.add_done_callback(self._attempts.discard)

    async def _attempt_logged(self, envelope: Envelope) -> None:
        try:
            await self._attempt(envelope)
        except StoreUnavailable as exc:
            log.warning("report for %s not sent: %s", envelope.key, exc.reason)
        except Exception:
            log.exception("report delivery failed")

    async def flush(self, within_s: float = FLUSH_S) -> None:
        """On shutdown: one more try of the reports due, within ``within_s``."""
        if not self.enabled:
            return
        try:
            async with asyncio.timeout(within_s):
                await self.deliver_due(final=True)
        except (TimeoutError, StoreUnavailable):
            pass
        left = [e.key for e in await self._pending_quietly()]
        if left and not self._store.shared:
            log.warning(
                "%d call reports not delivered are lost with this process (set STATE_URL to "
                "keep them across restarts): %s",
                len(left),
                ", ".join(left[:20]),
            )

    async def _pending_quietly(self) -> list[Envelope]:
        try:
            return await self.pending()
        except StoreUnavailable:
            return []

    async def deliver_due(self, *, final: bool = False) -> None:
        """Every report due, now, waiting for the attempts; ``final``: those still held for
        what would complete them go as they are (shutdown)."""
        if not self.enabled:
            return
        due = [e for e in await self.pending(self._wall()) if e.key not in self._sending]
        if not due:
            return
        gate = asyncio.Semaphore(PARALLEL)

        async def one(envelope: Envelope) -> None:
            async with gate:
                await self._attempt(envelope, final=final)

        await asyncio.gather(*(one(e) for e in due))

    async def _attempt(self, envelope: Envelope, *, final: bool = False) -> None:
        self._sending.add(envelope.key)
        try:
            claim = await self._store.claim(f"sending:{envelope.key}:{envelope.attempts}", LEASE_S)
            if claim is Claim.TAKEN:
                return  # another server has this attempt
            await self._send(envelope, final)
        finally:
            self._sending.discard(envelope.key)

    async def _send(self, envelope: Envelope, final: bool) -> None:
        now = self._wall()
        held = envelope.hold_until > now and not final
        payload, ready = await self.complete(envelope, not held)
        if not ready:
            # Waiting for what completes it: looked at again after a poll (same attempt),
            # behind what is due by then, so held reports never take every place in turn.
            await self._store.schedule(
                QUEUE, self._key(envelope.key), min(envelope.hold_until, now + POLL_S)
            )
            await self._store.delete(f"sending:{envelope.key}:{envelope.attempts}")
            return
        assert self.url is not None
        attempt = envelope.attempts + 1
        answer = await self._post(
            self.url, payload, self._secret, POST_TIMEOUT_S, {"X-Bridge-Attempt": str(attempt)}
        )
        if answer.ok:
            await self._drop(envelope)
            self._counted("delivered")
            log.info(
                "call report delivered (attempt %d)",
                attempt,
                extra={"event": "report_delivered", "data": {"call_sid": envelope.key}},
            )
            return
        now = self._wall()
        if now >= envelope.give_up_at:
            await self._drop(envelope)
            self._counted("given_up")
            log.error(
                "call report for %s given up after %d attempts: the receiver %s",
                envelope.key,
                attempt,
                answer.problem,
            )
            return
        later = Envelope(
            envelope.key,
            payload,
            attempt,
            now + backoff_s(attempt),
            envelope.give_up_at,
            0.0,
        )
        await self._keep(later)
        self._counted("failed")
        log.warning(
            "call report for %s not delivered (attempt %d): the receiver %s; trying again in "
            "%.0f s",
            envelope.key,
            attempt,
            answer.problem,
            backoff_s(attempt),
        )
