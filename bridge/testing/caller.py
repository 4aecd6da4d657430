"""A simulated Twilio caller: the webhook, the TwiML, and a Media Stream, as Twilio does them.

It signs the inbound-call webhook with the twilio library's validator, follows
the TwiML it gets back (the stream URL and its Parameters), then speaks Media
Streams: ``connected``, ``start``, one 20 ms μ-law frame every 20 ms in real
time (speech from a WAV, else line silence), ``stop`` when it hangs up. On the
way back it models Twilio's playback buffer: media queues and plays in real
time, a ``mark`` is echoed once the audio before it has played, ``clear``
flushes the buffer and echoes every pending mark. It records what the caller
heard, frame by frame, and when.

When the bridge closes a stream whose ``<Connect>`` has an ``action``, it does what
Twilio does: POSTs the signed action request with the call's parameters and runs the
TwiML it gets back: another ``<Connect><Stream>`` (a new stream of the same call, to
whichever server the URL reaches), ``<Say>`` (recorded as spoken) and ``<Hangup>``.
The caller's clock runs on across streams; what it says while no stream is open is
lost, as on a real line.

The call ends however a real one ends: the caller hangs up (``hang_up``), the TwiML
says ``<Hangup/>`` or runs out, or the REST API ends it (``end_by_rest``) or replaces
its TwiML (``replace_twiml``). With a ``status_callback`` the caller then POSTs
Twilio's signed ``completed`` call-status callback, once. ``start_call`` plays an
answered call the way Twilio runs one (an outbound call, say): webhook to
``webhook_url``, then whatever TwiML it returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import secrets
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Coroutine
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

from twilio.request_validator import RequestValidator
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from ..audio import TWILIO_FRAME_BYTES, ULAW_SILENCE
from ..twilio.media_streams import (
    Clear,
    OutboundMark,
    OutboundMedia,
    ProtocolError,
    connected_event,
    dtmf_event,
    mark_event,
    media_event,
    parse_bridge_message,
    start_event,
    stop_event,
)
from .call_result import FRAME_S, ActionRequest, CallbackPost, CallResult, StreamSpan, Utterance
from .speech import VOICED_RMS, frame_rms, load_speech

__all__ = [
    "CallResult",
    "CallbackPost",
    "SimulatedCaller",
    "Utterance",
    "WebhookRefused",
    "load_speech",
    "post_signed",
    "rfc2822_now",
]

SILENT_FRAME = bytes([ULAW_SILENCE]) * TWILIO_FRAME_BYTES


class WebhookRefused(Exception):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"webhook answered HTTP {status}")
        self.status, self.body = status, body


MAX_REDIRECTS = 20  # Twilio follows a call's redirects; a loop of them is our bug
APPLICATION_ERROR = "An application error has occurred."


def rfc2822_now() -> str:
    """Now, as Twilio writes times in callbacks: ``Tue, 02 Jan 2024 15:04:05 +0000``."""
    return format_datetime(datetime.now(UTC))


def _post_form(url: str, params: dict[str, str], signature: str | None) -> tuple[int, str]:
    body = urllib.parse.urlencode(params).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if signature is not None:
        headers["X-Twilio-Signature"] = signature
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


async def post_signed(url: str, params: dict[str, str], auth_token: str) -> CallbackPost:
    """POST a callback as Twilio does: form-encoded, signed with ``X-Twilio-Signature``,
    urllib in a thread, 10 s timeout. A server that does not answer gets status 0."""
    signature = RequestValidator(auth_token).compute_signature(url, params)
    post = CallbackPost(at=time.monotonic(), url=url, params=dict(params), status=0)
    try:
        post.status, _ = await asyncio.to_thread(_post_form, url, params, signature)
    except (OSError, http.client.HTTPException):
        post.status = 0
    return post


class SimulatedCaller:
    """Dial with ``async with SimulatedCaller(...).dial() as call:`` and script the caller."""

    def __init__(
        self,
        public_url: str,
        auth_token: str,
        *,
        account_sid: str = "AC" + "0" * 32,
        from_number: str = "+14155550123",
        to_number: str = "+14155550100",
        call_sid: str | None = None,
        sign_upgrade: bool = False,
        webhook_path: str = "/api/inbound-call",
        follow_actions: bool = True,
        direction: str = "inbound",
        webhook_url: str | None = None,
        call_status: str = "ringing",
        status_callback: str | None = None,
        status_callback_events: tuple[str, ...] = ("completed",),
    ) -> None:
        """``direction`` and ``call_status`` go in the webhook (``Direction``, ``CallStatus``);
        ``webhook_url`` is where the first webhook goes (else ``public_url + webhook_path``);
        with ``status_callback`` (and ``"completed"`` among ``status_callback_events``) the
        end of the call is POSTed there, signed, once."""
        self.public_url = public_url.rstrip("/")
        self.auth_token = auth_token
        self.account_sid = account_sid
        self.from_number = from_number
        self.to_number = to_number
        self.call_sid = call_sid or "CA" + secrets.token_hex(16)
        self.stream_sid = "MZ" + secrets.token_hex(16)
        self.sign_upgrade = sign_upgrade
        self.webhook_path = webhook_path
        self.follow_actions = follow_actions
        self.direction = direction
        self.webhook_url = webhook_url
        self.call_status = call_status
        self.status_callback = status_callback
        self.status_callback_events = tuple(status_callback_events)
        self.callback_sequence = 0  # SequenceNumber of the completed callback
        self.result = CallResult(call_sid=self.call_sid, dialled_at=0.0)
        self._ws: ClientConnection | None = None
        self._clock_task: asyncio.Task[None] | None = None
        self._listen_task: asyncio.Task[None] | None = None
        self._hanging_up = False
        self.action_url = ""  # the current <Connect>'s action, if it has one
        self._speech: deque[bytes] = deque()
        self._speech_done = asyncio.Event()
        self._speech_done.set()
        self._playback = bytearray()
        self._played_bytes = 0
        self._queued_bytes = 0
        self._marks: deque[tuple[str, int]] = deque()  # (name, queued bytes when it arrived)
        self._seq = 0
        self._closed = asyncio.Event()  # the call is over (or, not following actions, its stream)
        self._ended = asyncio.Event()  # the call is over, however it ended
        self._runner_task: asyncio.Task[None] | None = None  # TwiML Twilio is running
        self._end_task: asyncio.Task[None] | None = None  # the completed status callback
        self._after_stream: list[ET.Element] = []  # the verbs after the open <Connect>
        self.twiml = ""
        self.stream_url = ""
        self.parameters: dict[str, str] = {}

    # --- the webhook ------------------------------------------------------------------------

    def webhook_params(self) -> dict[str, str]:
        return {
            "AccountSid": self.account_sid,
            "ApiVersion": "2010-04-01",
            "CallSid": self.call_sid,
            "CallStatus": self.call_status,
            "Direction": self.direction,
            "From": self.from_number,
            "To": self.to_number,
        }

    @property
    def webhook_target(self) -> str:
        """Where the call's first webhook goes."""
        return self.webhook_url or self.public_url + self.webhook_path

    def _post_webhook(self, signature: str | None) -> tuple[int, str]:
        return self._post(self.webhook_target, self.webhook_params(), signature)

    @staticmethod
    def _post(url: str, params: dict[str, str], signature: str | None) -> tuple[int, str]:
        return _post_form(url, params, signature)

    async def fetch_twiml(self, *, forge: bool = False) -> str:
        """POST the signed webhook (urllib in a thread) and parse the Stream it returns."""
        url = self.webhook_target
        signer = RequestValidator("forged-" + self.auth_token if forge else self.auth_token)
        signature = signer.compute_signature(url, self.webhook_params())
        self.result.dialled_at = time.monotonic()
        status, body = await asyncio.to_thread(self._post_webhook, signature)
        if status != 200:
            raise WebhookRefused(status, body)
        self.use_twiml(body)
        self.result.answered_at = self.result.answered_at or time.monotonic()
        return body

    def use_twiml(self, body: str) -> None:
        """Take the stream to open from TwiML fetched some other way (a captured replay)."""
        self.twiml = body
        if not self._take_stream(ET.fromstring(body)):
            raise ValueError("TwiML has no <Connect><Stream>")

    def _take_stream(self, response: ET.Element) -> bool:
        """The TwiML's ``<Connect><Stream>``, if it has one, is the next stream to open."""
        verbs = list(response)
        for index, verb in enumerate(verbs):
            if verb.tag == "Connect":
                if not self._take_connect(verb):
                    return False
                self._after_stream = verbs[index + 1 :]
                return True
        return False

    def _take_connect(self, connect: ET.Element) -> bool:
        stream = connect.find("Stream")
        if stream is None:
            return False
        self.stream_url = stream.attrib["url"]
        self.parameters = {p.attrib["name"]: p.attrib["value"] for p in stream.findall("Parameter")}
        self.action_url = connect.attrib.get("action", "")
        return True

    # --- the stream -------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def dial(self, *, parameters: dict[str, str] | None = None) -> Any:
        """Webhook, then stream; on exit the caller hangs up (``stop``, then close)."""
        if not self.stream_url:
            await self.fetch_twiml()
        if parameters is not None:
            self.parameters = parameters
        await self.open_stream()
        try:
            yield self
        finally:
            await self.hang_up()

    def start_frames(self, parameters: dict[str, str] | None = None) -> list[str]:
        """What Twilio sends first on the stream: ``connected``, then ``start`` with the
        TwiML's Parameters (or ``parameters``)."""
        start = start_event(
            stream_sid=self.stream_sid,
            call_sid=self.call_sid,
            account_sid=self.account_sid,
            custom_parameters=self.parameters if parameters is None else parameters,
        )
        return [connected_event(), start]

    async def open_stream(self, *, before_start: tuple[str, ...] = ()) -> None:
        """Connect and start; ``before_start`` frames go between ``connected`` and ``start``."""
        await self._connect_stream(before_start)
        self.result.answered_at = self.result.answered_at or time.monotonic()
        self._start_clock()

    def _start_clock(self) -> None:
        if self._clock_task is None:
            self._clock_task = asyncio.create_task(self._clock(), name="caller_clock")

    async def _connect_stream(self, before_start: tuple[str, ...] = ()) -> None:
        headers = {}
        if self.sign_upgrade:
            headers["X-Twilio-Signature"] = RequestValidator(self.auth_token).compute_signature(
                self.stream_url, {}
            )
        ws = await connect(
            self.stream_url, additional_headers=headers, open_timeout=10, compression=None
        )
        if self.result.streams:  # a later stream of the call: Twilio gives it a new sid
            self.stream_sid = "MZ" + secrets.token_hex(16)
        self._seq = 1
        span = StreamSpan(self.stream_sid, time.monotonic())
        self.result.streams.append(span)
        self._ws = ws
        try:
            connected, start = self.start_frames()
            for frame in (connected, *before_start, start):
                await ws.send(frame)
        except ConnectionClosed:  # the bridge refused the stream at once
            self._listen_task = asyncio.create_task(self._listen(ws, span), name="caller_listen")
            return
        span.started_at = time.monotonic()
        if not self.result.stream_started_at:
            self.result.stream_started_at = span.started_at
        self._listen_task = asyncio.create_task(self._listen(ws, span), name="caller_listen")

    async def hang_up(self) -> None:
        """The caller hangs up: ``stop``, then close; returns once the call's completed
        status callback (if any) has been answered."""
        self._hanging_up = True
        ws = self._ws
        tasks = [t for t in (self._clock_task, self._listen_task) if t is not None]
        tasks += self._others_than_me(self._runner_task)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._clock_task = self._listen_task = self._runner_task = None
        if ws is not None:
            await self._send_stop_and_close(ws)
            self._ws = None
        self._closed.set()
        self._call_over()
        if self._end_task is not None:
            await asyncio.wait({self._end_task})

    async def close(self) -> None:
        """Tear the call down now (a fixture's cleanup): every task of the caller is
        cancelled, a callback still in flight included; the stream gets ``stop`` and closes."""
        self._hanging_up = True
        tasks = [t for t in (self._clock_task, self._listen_task, self._end_task) if t is not None]
        tasks += self._others_than_me(self._runner_task)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._clock_task = self._listen_task = self._runner_task = None
        ws, self._ws = self._ws, None
        if ws is not None:
            await self._send_stop_and_close(ws)
        self._closed.set()
        if self.result.ended_at is None:
            self.result.ended_at = time.monotonic()
        self._ended.set()

    async def end_by_rest(self) -> None:
        """Twilio ends the call on a REST update ``Status=completed``: the stream gets
        ``stop`` and closes (no ``<Connect action>`` is requested), and the call is over."""
        await self._stop_stream()
        self._end_call("REST completed")

    async def replace_twiml(self, twiml: str) -> None:
        """Twilio's REST update with new TwiML: the current stream stops (``stop``, close;
        no ``<Connect action>``), then the new TwiML runs (``<Say>``, ``<Pause>``,
        ``<Hangup/>``, ``<Dial>``, ``<Redirect>``, ``<Connect><Stream>``); its end ends the
        call. Returns when it has run, or a new stream has opened."""
        await self._stop_stream()
        if self.result.ended_at is not None:
            return
        self.twiml = twiml
        await self._run(self._run_document(twiml))

    async def replace_url(self, url: str) -> None:
        """Twilio's REST update with a new ``Url``: the stream stops, then Twilio POSTs the
        URL (signed, the call's parameters) and runs the TwiML it answers."""
        await self._stop_stream()
        if self.result.ended_at is not None:
            return
        params = {**self.webhook_params(), "CallStatus": "in-progress"}
        await self._run(self._fetch_and_run(url, params))

    async def start_call(self, *, twiml: str | None = None) -> None:
        """Twilio answers the call and runs it: POST the signed webhook to
        ``webhook_target`` (or take ``twiml`` as given) and run what it answers, as
        ``<Connect action>`` answers are run. The caller's clock starts at the answer.
        Returns once a stream has opened or the call has ended; a refused webhook is
        Twilio's application error, and the call ends."""
        self.result.dialled_at = self.result.dialled_at or time.monotonic()
        self.result.answered_at = time.monotonic()
        self._start_clock()
        if twiml is not None:
            self.twiml = twiml
            await self._run(self._run_document(twiml))
        else:
            await self._run(self._fetch_and_run(self.webhook_target, self.webhook_params()))

    async def _run(self, work: Coroutine[Any, Any, None]) -> None:
        """Run TwiML in a task of the caller's own: a later update or a hang-up cancels it."""
        for task in self._others_than_me(self._runner_task):
            task.cancel()
            await asyncio.wait({task})
        self._runner_task = asyncio.create_task(work, name="caller_twiml")
        await asyncio.wait({self._runner_task})

    @staticmethod
    def _others_than_me(task: asyncio.Task[None] | None) -> list[asyncio.Task[None]]:
        return [task] if task is not None and task is not asyncio.current_task() else []

    async def _stop_stream(self) -> None:
        """Twilio stops the stream itself (a REST update): ``stop``, then close; the TwiML
        it was running (a ``<Connect action>`` request, a ``<Pause>``) is dropped."""
        for task in self._others_than_me(self._runner_task):
            task.cancel()
            await asyncio.wait({task})
        listen, self._listen_task = self._listen_task, None
        for task in self._others_than_me(listen):
            task.cancel()
            await asyncio.wait({task})
        ws, self._ws = self._ws, None
        if ws is not None:
            await self._send_stop_and_close(ws)
        self._playback.clear()  # the stream's queued audio goes with it
        self._marks.clear()

    async def _send_stop_and_close(self, ws: ClientConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            self._seq += 1
            await ws.send(
                stop_event(
                    stream_sid=self.stream_sid,
                    sequence_number=self._seq,
                    call_sid=self.call_sid,
                    account_sid=self.account_sid,
                )
            )
        await ws.close()
        if self.result.streams:
            self._record_close(ws, self.result.streams[-1])

    def _call_over(self) -> None:
        """The call has ended: note when, and post its completed status callback, once."""
        if self.result.ended_at is not None:
            return
        self.result.ended_at = time.monotonic()
        self._ended.set()
        if self.status_callback and "completed" in self.status_callback_events:
            self._end_task = asyncio.create_task(
                self._post_completed(self.status_callback), name="caller_status_callback"
            )

    async def _post_completed(self, url: str) -> None:
        ended = self.result.ended_at or time.monotonic()
        answered = self.result.answered_at
        duration = round(ended - answered) if answered else 0
        params = {
            "AccountSid": self.account_sid,
            "ApiVersion": "2010-04-01",
            "CallSid": self.call_sid,
            "From": self.from_number,
            "To": self.to_number,
            "Direction": self.direction,
            "CallStatus": "completed",
            "CallDuration": str(duration),
            "CallbackSource": "call-progress-events",
            "SequenceNumber": str(self.callback_sequence),
            "Timestamp": rfc2822_now(),
        }
        self.result.callbacks.append(await post_signed(url, params, self.auth_token))

    async def wait_ended(self, timeout: float | None = 10.0) -> None:
        """Wait until the call is over, however it ends."""
        async with asyncio.timeout(timeout):
            await self._ended.wait()

    @property
    def ended(self) -> bool:
        return self.result.ended_at is not None

    def _record_close(self, ws: ClientConnection, span: StreamSpan) -> None:
        if span.closed_at is not None:
            return
        span.closed_at = time.monotonic()
        span.close_code, span.close_reason = ws.close_code, ws.close_reason or ""
        if self.result.close_code is None:  # the first stream's close, as before moves
            self.result.close_code = span.close_code
            self.result.close_reason = span.close_reason
            self.result.unplayed_at_close = len(self._playback)

    async def _clock(self) -> None:
        """Every 20 ms: send one frame, play one frame, echo marks that have played."""
        try:
            await self._run_clock(self.result)
        finally:
            self._speech_done.set()  # nobody waits on speech a closed line cannot send

    async def _run_clock(self, result: CallResult) -> None:
        tick = time.monotonic()
        chunk = 0
        utterance: Utterance | None = None
        while True:
            if self._speech:
                frame = self._speech.popleft()
                now = time.monotonic()
                if utterance is None:
                    utterance = Utterance(sent_from=now, voiced_until=now)
                    result.utterances.append(utterance)
                if frame_rms(frame) > VOICED_RMS:
                    utterance.voiced_until = now
                if not self._speech:
                    utterance = None
                    self._speech_done.set()
            else:
                frame = SILENT_FRAME
            chunk += 1
            result.said += frame
            ws = self._ws
            if ws is None:
                result.frames_unsent += 1
            else:
                self._seq += 1
                with contextlib.suppress(ConnectionClosed):  # the listener sees the close
                    await ws.send(
                        media_event(
                            stream_sid=self.stream_sid,
                            sequence_number=self._seq,
                            chunk=chunk,
                            timestamp_ms=chunk * 20,
                            ulaw=frame,
                        )
                    )
                    result.frames_sent += 1
            self._play_one()
            if ws is not None:
                with contextlib.suppress(ConnectionClosed):
                    await self._echo_played_marks()
            tick += FRAME_S
            await asyncio.sleep(max(0.0, tick - time.monotonic()))

    def _play_one(self) -> None:
        if self._playback:
            frame = bytes(self._playback[:TWILIO_FRAME_BYTES])
            del self._playback[:TWILIO_FRAME_BYTES]
            frame = frame.ljust(TWILIO_FRAME_BYTES, bytes([ULAW_SILENCE]))
            self._played_bytes += TWILIO_FRAME_BYTES
            if frame_rms(frame) > VOICED_RMS:
                self.result.heard_voiced_at.append(time.monotonic())
        else:
            frame = SILENT_FRAME
        self.result.heard += frame

    async def _echo_played_marks(self) -> None:
        while self._marks and self._marks[0][1] <= self._played_bytes:
            name, _ = self._marks.popleft()
            await self._send_mark(name)

    async def _send_mark(self, name: str) -> None:
        assert self._ws is not None
        self._seq += 1
        await self._ws.send(
            mark_event(stream_sid=self.stream_sid, sequence_number=self._seq, name=name)
        )
        self.result.marks_echoed += 1

    async def _listen(self, ws: ClientConnection, span: StreamSpan) -> None:
        try:
            async for raw in ws:
                try:
                    message = parse_bridge_message(raw)
                except ProtocolError as exc:  # Twilio would ignore it and warn (31951)
                    self.result.protocol_errors.append(str(exc))
                    continue
                if message.stream_sid != self.stream_sid:
                    self.result.protocol_errors.append("message for another streamSid (31951)")
                    continue
                if isinstance(message, OutboundMedia):
                    # Twilio takes media of any size; time each 20 ms frame in it.
                    arrived = time.monotonic()
                    frames = -(-len(message.payload) // TWILIO_FRAME_BYTES)
                    self.result.media_received.extend([arrived] * frames)
                    self.result.media_messages += 1
                    self._playback += message.payload
                    self._queued_bytes += len(message.payload)
                elif isinstance(message, OutboundMark):
                    # Played when everything queued before it has played.
                    self._marks.append((message.name, self._queued_bytes))
                elif isinstance(message, Clear):
                    self.result.clears.append(time.monotonic())
                    self._queued_bytes -= len(self._playback)
                    self._playback.clear()
                    while self._marks:
                        await self._send_mark(self._marks.popleft()[0])
        except ConnectionClosed:
            pass
        self._record_close(ws, span)
        if self._hanging_up:
            return
        self._ws = None
        if self.follow_actions and self.action_url:
            await self._follow_action(span)
        elif self.follow_actions:  # no action: Twilio goes on after </Connect>
            self._playback.clear()
            self._marks.clear()
            await self._execute(self._after_stream, None)
        else:
            self._closed.set()

    async def _follow_action(self, ended: StreamSpan) -> None:
        """The stream ended and the call did not: ask ``action`` what next, as Twilio does,
        and run the TwiML it answers (``<Redirect>`` asks the next URL, and so on)."""
        self._playback.clear()  # the ended stream's queued audio goes with it
        self._marks.clear()
        params = {
            **self.webhook_params(),
            "CallStatus": "in-progress",
            "StreamSid": ended.stream_sid,
        }
        await self._fetch_and_run(self.action_url, params, record=True)

    async def _fetch_and_run(
        self, url: str, params: dict[str, str], *, record: bool = False
    ) -> None:
        """POST ``url`` (signed) and run the TwiML it answers, following ``<Redirect>``s;
        ``record``: each request is one of ``result.actions``."""
        for _ in range(MAX_REDIRECTS):
            signature = RequestValidator(self.auth_token).compute_signature(url, params)
            request = ActionRequest(at=time.monotonic(), url=url, status=0)
            if record:
                self.result.actions.append(request)
            try:
                request.status, body = await asyncio.to_thread(self._post, url, params, signature)
            except (OSError, http.client.HTTPException):  # no server answered
                request.status, body = 0, ""
            response = _parse(body) if request.status == 200 else None
            if response is None:  # Twilio's own error message, then it hangs up
                self._twilio_says(APPLICATION_ERROR)
                self._end_call("application error")
                return
            redirect = await self._run_verbs(list(response), request)
            if not redirect:
                return
            url = redirect
        self._end_call("too many redirects")

    async def _run_document(self, twiml: str) -> None:
        response = _parse(twiml)
        if response is None:
            self._twilio_says(APPLICATION_ERROR)
            self._end_call("application error")
            return
        await self._execute(list(response), None)

    async def _execute(self, verbs: list[ET.Element], request: ActionRequest | None) -> None:
        redirect = await self._run_verbs(verbs, request)
        if redirect:
            params = {**self.webhook_params(), "CallStatus": "in-progress"}
            await self._fetch_and_run(redirect, params, record=True)

    async def _run_verbs(self, verbs: list[ET.Element], request: ActionRequest | None) -> str:
        """Run TwiML verbs as Twilio does; returns the URL a ``<Redirect>`` asks for, else
        "" (the call ended, or a stream opened and runs on)."""
        for index, verb in enumerate(verbs):
            if request is not None:
                request.verbs.append(verb.tag)
            if verb.tag == "Say":
                self._twilio_says(verb.text or "")
            elif verb.tag == "Pause":
                await asyncio.sleep(float(verb.attrib.get("length", "1")))
            elif verb.tag in ("Hangup", "Reject"):
                self._end_call("hangup")
                return ""
            elif verb.tag == "Redirect":
                redirect = (verb.text or "").strip()
                if redirect:
                    return redirect
                break
            elif verb.tag == "Dial":  # the call goes to the number; when that ends, on
                number = verb.find("Number")
                text = number.text if number is not None else verb.text
                self.result.dialled.append((text or "").strip())
            elif verb.tag == "Connect" and self._take_connect(verb):
                self._after_stream = verbs[index + 1 :]
                try:
                    await self._connect_stream()
                except (OSError, WebSocketException, TimeoutError):
                    self._end_call("stream failed")  # Twilio: 31920, then the call ends
                return ""
        self._end_call("end of TwiML")
        return ""

    def _twilio_says(self, text: str) -> None:
        self.result.twilio_said.append(text)
        self.result.twilio_said_at.append(time.monotonic())

    def _end_call(self, how: str) -> None:
        """Twilio ends the call (its TwiML did, or the REST API)."""
        if self.result.ended_at is None:
            self.result.ended_by_twilio = how
        self._closed.set()
        if self._clock_task is not None:
            self._clock_task.cancel()
        self._call_over()

    # --- the script -------------------------------------------------------------------------

    async def say(self, ulaw: bytes) -> None:
        """Speak (queue 20 ms frames) and return when the last frame has been sent."""
        frames = [
            ulaw[i : i + TWILIO_FRAME_BYTES].ljust(TWILIO_FRAME_BYTES, bytes([ULAW_SILENCE]))
            for i in range(0, len(ulaw), TWILIO_FRAME_BYTES)
        ]
        if self._clock_task is None or self._clock_task.done():
            return  # no line to speak on: the call is over
        self._speech_done.clear()
        self._speech.extend(frames)
        await self._speech_done.wait()

    async def send_raw(self, frame: str) -> None:
        """Any frame, as Twilio might send it (a new event type, say)."""
        assert self._ws is not None
        await self._ws.send(frame)

    async def press(self, digit: str) -> None:
        assert self._ws is not None
        self._seq += 1
        await self._ws.send(
            dtmf_event(stream_sid=self.stream_sid, sequence_number=self._seq, digit=digit)
        )

    async def wait_for_answer(self, timeout: float = 10.0) -> float:
        """Wait until answer audio arrives after the last utterance; returns its arrival time."""
        since = self.result.utterances[-1].voiced_until if self.result.utterances else 0.0
        async with asyncio.timeout(timeout):
            while True:
                later = [t for t in self.result.media_received if t > since]
                if later:
                    return later[0]
                if self._closed.is_set():
                    raise ConnectionError("the stream closed before any answer")
                await asyncio.sleep(FRAME_S)

    async def wait_until_quiet(self, quiet_s: float = 1.0, timeout: float = 30.0) -> None:
        """Wait until the caller's playback is empty and nothing has arrived for ``quiet_s``."""
        async with asyncio.timeout(timeout):
            while True:
                last = self.result.media_received[-1] if self.result.media_received else 0.0
                if not self._playback and time.monotonic() - last >= quiet_s:
                    return
                if self._closed.is_set():
                    return
                await asyncio.sleep(FRAME_S)

    async def wait_closed(self, timeout: float = 10.0) -> None:
        """Wait for the bridge to close the stream."""
        async with asyncio.timeout(timeout):
            await self._closed.wait()

    @property
    def is_hearing_audio(self) -> bool:
        return bool(self._playback)


def _parse(twiml: str) -> ET.Element | None:
    """A TwiML document, or None when it is not one (Twilio's 12100)."""
    try:
        response = ET.fromstring(twiml)
    except ET.ParseError:
        return None
    return response if response.tag == "Response" else None
