"""The telephone network behind the simulated Twilio: the people and machines outbound calls reach.

``TwilioRestFake`` hands every call the bridge places (``calls.create``) to a
``PhoneNetwork``, which plays it out as Twilio and the callee would, over real HTTP
and a real Media Stream:

* the call-progress status callbacks asked for (``initiated``, ``ringing``,
  ``answered``, and the final one), each signed like Twilio's;
* a ``HUMAN`` answers after ``ring_s``: a ``SimulatedCaller`` fetches the call's
  ``Url`` and opens its stream, and a test scripts the person through it
  (``await rest.answered(sid_or_number)``); with async AMD, ``AnsweredBy=human``
  follows ``amd_s`` after the answer;
* a ``MACHINE`` answers the same way, plays its greeting then a 1 kHz beep into the
  stream, posts the AMD verdict (``machine_start`` as the greeting starts with
  ``MachineDetection=Enable``; ``machine_end_beep`` right after the beep with
  ``DetectMessageEnd``), then records whatever the call plays until it ends or
  ``machine_timeout_s`` passes (then it hangs up);
* ``NO_ANSWER``, ``BUSY`` and ``FAILED`` end with that status and no webhook; a number
  nobody registered rings out as ``NO_ANSWER``;
* a recording started on a call posts its status callback ``delay_s`` after the call ends.

Every task it starts is its own: ``aclose()`` cancels and awaits them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import logging
import secrets
import time
import urllib.parse
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import numpy as np

from ..audio import pcm16_to_ulaw
from .call_result import CallbackPost
from .caller import SimulatedCaller, post_signed, rfc2822_now
from .speech import load_speech

log = logging.getLogger(__name__)

API_VERSION = "2010-04-01"
FINAL_STATUSES = ("completed", "busy", "no-answer", "failed", "canceled")


def tone(frequency: float = 1000.0, seconds: float = 0.5, level: float = 0.5) -> bytes:
    """A sine tone as 8 kHz μ-law (an answering machine's beep, by default)."""
    t = np.arange(round(8000 * seconds)) / 8000.0
    pcm = (np.sin(2 * np.pi * frequency * t) * level * 32767).astype("<i2")
    return pcm16_to_ulaw(pcm.tobytes())


BEEP = tone(1000.0, 0.5)


@functools.cache
def default_greeting() -> bytes:
    """About 2 s of speech: an answering machine's "leave a message"."""
    return load_speech("caller_hello.wav")[: 2 * 8000]


class CalleeKind(enum.Enum):
    HUMAN = "human"
    MACHINE = "machine"
    NO_ANSWER = "no-answer"
    BUSY = "busy"
    FAILED = "failed"


@dataclass
class Callee:
    """Who (or what) answers a number.

    ``ring_s``: how long it rings before the outcome (answer, busy, failure; no answer
    rings this long, capped by the call's ``Timeout``). ``amd_s``: a human's AMD verdict
    comes this long after the answer. ``greeting``: μ-law a human says once its stream
    has started (None: nothing), or a machine's greeting (None: ~2 s of speech).
    ``beep``: the machine beeps after it (else ``machine_end_silence``).
    ``machine_timeout_s``: the machine hangs up this long after the beep.
    ``hang_up_after_s``: a human hangs up by itself this long after its greeting (or,
    with none, after its stream has started).
    """

    kind: CalleeKind = CalleeKind.HUMAN
    ring_s: float = 0.2
    amd_s: float = 1.0
    greeting: bytes | None = None
    beep: bool = True
    machine_timeout_s: float = 30.0
    hang_up_after_s: float | None = None


def form_text(form: dict[str, Any], name: str, default: str = "") -> str:
    value = form.get(name)
    if value is None:
        return default
    if isinstance(value, list | tuple):
        return " ".join(str(v) for v in value)
    return str(value)


def form_list(form: dict[str, Any], name: str, default: tuple[str, ...] = ()) -> list[str]:
    """A list field as the twilio library sends it (a Python list: one form key, several
    values) or as a space-separated string; lower-cased, as Twilio reads events."""
    value = form.get(name)
    if value is None:
        return list(default)
    values = value if isinstance(value, list | tuple) else [value]
    return [part.lower() for v in values for part in str(v).split()]


@dataclass
class PlacedCall:
    """One call placed through ``calls.create`` and what became of it."""

    sid: str
    account_sid: str
    form: dict[str, Any]  # the create's form fields, as the twilio library sent them
    callee: Callee
    auth_token: str
    created_at: float
    status: str = "queued"
    caller: SimulatedCaller | None = None  # once answered
    answered_at: float | None = None
    ended_at: float | None = None  # unanswered calls; answered ones end with their caller
    answered_by: str | None = None  # the last AMD verdict posted
    amd_callbacks: list[CallbackPost] = field(default_factory=list)
    callbacks: list[CallbackPost] = field(default_factory=list)  # status callbacks posted here
    beep_at: float | None = None  # a machine: when its beep ended
    heard_at_beep: int = 0  # bytes of result.heard when the beep ended
    sequence: int = 0  # the next status callback's SequenceNumber
    cancel: asyncio.Event = field(default_factory=asyncio.Event)  # REST update while ringing

    @property
    def kind(self) -> CalleeKind:
        return self.callee.kind

    @property
    def to(self) -> str:
        return form_text(self.form, "To")

    @property
    def from_(self) -> str:
        return form_text(self.form, "From")

    @property
    def url(self) -> str:
        return form_text(self.form, "Url")

    @property
    def status_callback(self) -> str:
        return form_text(self.form, "StatusCallback")

    @property
    def events(self) -> list[str]:
        return form_list(self.form, "StatusCallbackEvent", ("completed",))

    @property
    def machine_detection(self) -> str:
        return form_text(self.form, "MachineDetection")

    @property
    def async_amd(self) -> bool:
        return form_text(self.form, "AsyncAmd").lower() == "true"

    @property
    def timeout_s(self) -> float:
        try:
            return float(form_text(self.form, "Timeout", "60"))
        except ValueError:
            return 60.0

    @property
    def call_status(self) -> str:
        """Where the call is now: queued, ringing, in-progress, or how it ended."""
        if self.caller is not None and self.caller.ended:
            return "completed"
        return self.status

    @property
    def ended(self) -> bool:
        return self.call_status in FINAL_STATUSES

    @property
    def status_callbacks(self) -> list[CallbackPost]:
        """Every call-status callback posted for the call, in order (the caller posts the
        completed one of an answered call)."""
        posted = self.callbacks + (self.caller.result.callbacks if self.caller else [])
        return sorted(posted, key=lambda post: post.at)

    @property
    def voicemail(self) -> list[tuple[float, str]]:
        """A machine's recording of what Twilio said after the beep: (seconds after the
        beep, text)."""
        if self.caller is None or self.beep_at is None:
            return []
        result = self.caller.result
        return [
            (at - self.beep_at, text)
            for text, at in zip(result.twilio_said, result.twilio_said_at, strict=True)
            if at >= self.beep_at
        ]

    @property
    def voicemail_audio(self) -> bytes:
        """What the machine heard over the stream after the beep (8 kHz μ-law)."""
        if self.caller is None or self.beep_at is None:
            return b""
        return bytes(self.caller.result.heard[self.heard_at_beep :])

    def resource(self) -> dict[str, Any]:
        """The Call resource as the REST API answers it."""
        now = format_datetime(datetime.now(UTC))
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Calls/{self.sid}"
        return {
            "sid": self.sid,
            "account_sid": self.account_sid,
            "parent_call_sid": None,
            "to": self.to,
            "to_formatted": self.to,
            "from": self.from_,
            "from_formatted": self.from_,
            "phone_number_sid": None,
            "status": self.call_status,
            "start_time": None,
            "end_time": None,
            "duration": None,
            "price": None,
            "price_unit": "USD",
            "direction": "outbound-api",
            "answered_by": self.answered_by,
            "api_version": API_VERSION,
            "forwarded_from": None,
            "group_sid": None,
            "caller_name": None,
            "queue_time": "0",
            "trunk_sid": None,
            "date_created": now,
            "date_updated": now,
            "uri": f"{uri}.json",
            "subresource_uris": {
                "recordings": f"{uri}/Recordings.json",
                "notifications": f"{uri}/Notifications.json",
            },
        }


@dataclass
class Recording:
    """A recording started on a call through ``calls(sid).recordings.create``."""

    sid: str
    call_sid: str
    account_sid: str
    form: dict[str, Any]
    auth_token: str
    started_at: float  # monotonic
    start_time: str  # RFC 2822
    delay_s: float = 0.3  # from the call's end to the completed callback
    ended_at: float | None = None
    callbacks: list[CallbackPost] = field(default_factory=list)

    @property
    def channels(self) -> int:
        return 2 if form_text(self.form, "RecordingChannels").lower() == "dual" else 1

    @property
    def status_callback(self) -> str:
        return form_text(self.form, "RecordingStatusCallback")

    @property
    def events(self) -> list[str]:
        return form_list(self.form, "RecordingStatusCallbackEvent", ("completed",))

    @property
    def status(self) -> str:
        return "in-progress" if self.ended_at is None else "completed"

    @property
    def url(self) -> str:
        return f"https://api.twilio.com/{API_VERSION}/Accounts/{self.account_sid}/Recordings/{self.sid}"

    def resource(self) -> dict[str, Any]:
        return {
            "sid": self.sid,
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "call_sid": self.call_sid,
            "conference_sid": None,
            "date_created": self.start_time,
            "date_updated": self.start_time,
            "start_time": self.start_time,
            "duration": "-1",
            "price": None,
            "price_unit": "USD",
            "status": self.status,
            "channels": self.channels,
            "source": "StartCallRecordingAPI",
            "error_code": None,
            "track": form_text(self.form, "RecordingTrack", "both"),
            "encryption_details": None,
            "uri": (
                f"/{API_VERSION}/Accounts/{self.account_sid}/Calls/{self.call_sid}"
                f"/Recordings/{self.sid}.json"
            ),
        }

    def callback_params(self, status: str) -> dict[str, str]:
        ended = self.ended_at if self.ended_at is not None else time.monotonic()
        duration = round(ended - self.started_at) if status == "completed" else 0
        return {
            "AccountSid": self.account_sid,
            "CallSid": self.call_sid,
            "RecordingSid": self.sid,
            "RecordingUrl": self.url,
            "RecordingStatus": status,
            "RecordingDuration": str(duration),
            "RecordingChannels": str(self.channels),
            "RecordingSource": "StartCallRecordingAPI",
            "RecordingStartTime": self.start_time,
        }


def new_sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


class PhoneNetwork:
    """Plays out placed calls and recordings on one event loop; owns every task it starts."""

    def __init__(self) -> None:
        self.callees: dict[str, Callee] = {}
        self.placed: dict[str, PlacedCall] = {}
        self.recordings: dict[str, Recording] = {}
        self.errors: list[BaseException] = []  # what a task of the network raised
        self.queue_s = 0.05  # a placed call's time in Twilio's queue
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False

    # --- tasks ------------------------------------------------------------------------------

    def spawn(self, work: Coroutine[Any, Any, None], name: str = "phone_network") -> None:
        """Start ``work`` as a task of the network (on the running loop)."""
        if self._closing:
            work.close()
            return
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def spawn_threadsafe(
        self, loop: asyncio.AbstractEventLoop, work: Coroutine[Any, Any, None], name: str
    ) -> None:
        """``spawn`` from another thread (a REST request arrives on the bridge's thread)."""
        try:
            loop.call_soon_threadsafe(self.spawn, work, name)
        except RuntimeError:  # the loop has closed: nobody will play this out
            work.close()

    @property
    def running(self) -> int:
        """How many of the network's tasks are still running."""
        return len(self._tasks)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error("phone network task %s failed", task.get_name(), exc_info=error)
            self.errors.append(error)

    async def aclose(self) -> None:
        """Cancel and await every task, and tear down the calls still up."""
        await asyncio.sleep(0)  # spawns scheduled from threads run (and are dropped)
        self._closing = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for call in list(self.placed.values()):
            if call.caller is not None:
                await call.caller.close()

    # --- placed calls -----------------------------------------------------------------------

    def callee_for(self, number: str) -> Callee:
        return self.callees.get(number) or Callee(kind=CalleeKind.NO_ANSWER)

    async def answered(self, call: str, timeout: float = 10.0) -> SimulatedCaller:
        """The person (or machine) who answered ``call`` (a call SID, or the number called:
        its latest call), once its stream has started."""
        async with asyncio.timeout(timeout):
            while True:
                placed = self.find(call)
                if placed is not None:
                    caller = placed.caller
                    if caller is not None and caller.result.stream_started_at:
                        return caller
                    if placed.ended:
                        raise ConnectionError(
                            f"call {placed.sid} ended ({placed.call_status}) with no stream"
                        )
                await asyncio.sleep(0.01)

    def find(self, call: str) -> PlacedCall | None:
        if call in self.placed:
            return self.placed[call]
        to_number = [p for p in self.placed.values() if p.to == call]
        return to_number[-1] if to_number else None

    async def play(self, call: PlacedCall) -> None:
        """The call from ``queued`` to its end, as the network and the callee play it."""
        callee = call.callee
        if await self._canceled_within(call, self.queue_s):
            return
        await self._progress(call, "initiated", "initiated")
        if callee.kind in (CalleeKind.BUSY, CalleeKind.FAILED):
            if not await self._canceled_within(call, callee.ring_s):
                await self._final(call, callee.kind.value)
            return
        call.status = "ringing"
        await self._progress(call, "ringing", "ringing")
        answers = callee.kind in (CalleeKind.HUMAN, CalleeKind.MACHINE)
        if await self._canceled_within(call, min(callee.ring_s, call.timeout_s)):
            return
        if not answers or callee.ring_s > call.timeout_s:
            await self._final(call, "no-answer")
            return
        await self._answer(call)

    async def _canceled_within(self, call: PlacedCall, seconds: float) -> bool:
        """Wait ``seconds``; True when a REST update canceled the call meanwhile."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(call.cancel.wait(), seconds)
        if call.cancel.is_set():
            await self._final(call, "canceled")
            return True
        return False

    async def _answer(self, call: PlacedCall) -> None:
        callee = call.callee
        url = call.url
        parts = urllib.parse.urlsplit(url)
        events = tuple(call.events)
        caller = SimulatedCaller(
            f"{parts.scheme}://{parts.netloc}" if url else "http://twilio.invalid",
            call.auth_token,
            account_sid=call.account_sid,
            from_number=call.from_,
            to_number=call.to,
            call_sid=call.sid,
            direction="outbound-api",
            call_status="in-progress",
            webhook_url=url or None,
            status_callback=call.status_callback or None,
            status_callback_events=events,
        )
        call.answered_at = time.monotonic()
        call.status = "in-progress"
        call.caller = caller
        await self._progress(call, "answered", "in-progress")
        caller.callback_sequence = call.sequence
        amd = call.machine_detection if call.async_amd else ""
        if amd and callee.kind is CalleeKind.HUMAN:
            self.spawn(self._human_verdict(call, caller), name="amd_human")
        twiml = form_text(call.form, "Twiml") or None
        await caller.start_call(twiml=None if url else twiml)
        if callee.kind is CalleeKind.HUMAN:
            await self._human(call, caller)
        else:
            await self._machine(call, caller, amd)

    async def _human(self, call: PlacedCall, caller: SimulatedCaller) -> None:
        callee = call.callee
        if caller.ended or not caller.result.stream_started_at:
            return
        if callee.greeting:
            await caller.say(callee.greeting)
        if callee.hang_up_after_s is not None:
            try:
                await caller.wait_ended(callee.hang_up_after_s)
            except TimeoutError:
                await caller.hang_up()

    async def _human_verdict(self, call: PlacedCall, caller: SimulatedCaller) -> None:
        await asyncio.sleep(call.callee.amd_s)
        await self._verdict(call, "unknown" if caller.ended else "human")

    async def _machine(self, call: PlacedCall, caller: SimulatedCaller, amd: str) -> None:
        callee = call.callee
        if caller.ended:
            return
        if amd == "Enable":
            self.spawn(self._verdict(call, "machine_start"), name="amd_machine_start")
        await caller.say(callee.greeting or default_greeting())
        if callee.beep and not caller.ended:
            await caller.say(BEEP)
        if caller.ended:  # hung up on during the greeting: nothing recorded
            return
        call.beep_at = time.monotonic()
        call.heard_at_beep = len(caller.result.heard)
        if amd == "DetectMessageEnd":
            verdict = "machine_end_beep" if callee.beep else "machine_end_silence"
            self.spawn(self._verdict(call, verdict), name="amd_machine_end")
        try:
            await caller.wait_ended(callee.machine_timeout_s)
        except TimeoutError:  # the machine's recording time is up: it hangs up
            await caller.hang_up()

    async def _verdict(self, call: PlacedCall, answered_by: str) -> None:
        """Post the async AMD result to ``AsyncAmdStatusCallback``."""
        call.answered_by = answered_by
        url = form_text(call.form, "AsyncAmdStatusCallback")
        if not url:
            return
        answered = call.answered_at or time.monotonic()
        params = {
            "CallSid": call.sid,
            "AccountSid": call.account_sid,
            "AnsweredBy": answered_by,
            "MachineDetectionDuration": str(round((time.monotonic() - answered) * 1000)),
        }
        call.amd_callbacks.append(await post_signed(url, params, call.auth_token))

    async def _progress(
        self, call: PlacedCall, event: str, status: str, duration: str | None = None
    ) -> None:
        """Post one call-progress status callback, if the call asked for ``event``."""
        url = call.status_callback
        if not url or event not in call.events:
            return
        params = {
            "AccountSid": call.account_sid,
            "ApiVersion": API_VERSION,
            "CallSid": call.sid,
            "From": call.from_,
            "To": call.to,
            "Direction": "outbound-api",
            "CallStatus": status,
            "CallbackSource": "call-progress-events",
            "SequenceNumber": str(call.sequence),
            "Timestamp": rfc2822_now(),
        }
        if duration is not None:
            params["CallDuration"] = duration
        call.sequence += 1
        call.callbacks.append(await post_signed(url, params, call.auth_token))

    async def _final(self, call: PlacedCall, status: str) -> None:
        call.status = status
        call.ended_at = time.monotonic()
        await self._progress(call, "completed", status, duration="0")

    # --- recordings -------------------------------------------------------------------------

    async def record(self, recording: Recording, caller: SimulatedCaller) -> None:
        """Post the recording's callbacks: ``in-progress`` now (if asked), ``completed``
        ``delay_s`` after the call ends, once."""
        url = recording.status_callback
        if url and "in-progress" in recording.events:
            params = recording.callback_params("in-progress")
            recording.callbacks.append(await post_signed(url, params, recording.auth_token))
        await caller.wait_ended(None)
        recording.ended_at = caller.result.ended_at or time.monotonic()
        await asyncio.sleep(recording.delay_s)
        if url and "completed" in recording.events:
            params = recording.callback_params("completed")
            recording.callbacks.append(await post_signed(url, params, recording.auth_token))
