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
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from collections import deque
from typing import Any

from twilio.request_validator import RequestValidator
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

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
from .call_result import FRAME_S, ActionRequest, CallResult, StreamSpan, Utterance
from .speech import VOICED_RMS, frame_rms, load_speech

__all__ = ["CallResult", "SimulatedCaller", "Utterance", "WebhookRefused", "load_speech"]

SILENT_FRAME = bytes([ULAW_SILENCE]) * TWILIO_FRAME_BYTES


class WebhookRefused(Exception):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"webhook answered HTTP {status}")
        self.status, self.body = status, body


MAX_REDIRECTS = 20  # Twilio follows a call's redirects; a loop of them is our bug


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
    ) -> None:
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
        self.twiml = ""
        self.stream_url = ""
        self.parameters: dict[str, str] = {}

    # --- the webhook ------------------------------------------------------------------------

    def webhook_params(self) -> dict[str, str]:
        return {
            "AccountSid": self.account_sid,
            "ApiVersion": "2010-04-01",
            "CallSid": self.call_sid,
            "CallStatus": "ringing",
            "Direction": "inbound",
            "From": self.from_number,
            "To": self.to_number,
        }

    def _post_webhook(self, signature: str | None) -> tuple[int, str]:
        return self._post(self.public_url + self.webhook_path, self.webhook_params(), signature)

    @staticmethod
    def _post(url: str, params: dict[str, str], signature: str | None) -> tuple[int, str]:
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

    async def fetch_twiml(self, *, forge: bool = False) -> str:
        """POST the signed webhook (urllib in a thread) and parse the Stream it returns."""
        url = self.public_url + self.webhook_path
        signer = RequestValidator("forged-" + self.auth_token if forge else self.auth_token)
        signature = signer.compute_signature(url, self.webhook_params())
        self.result.dialled_at = time.monotonic()
        status, body = await asyncio.to_thread(self._post_webhook, signature)
        if status != 200:
            raise WebhookRefused(status, body)
        self.use_twiml(body)
        return body

    def use_twiml(self, body: str) -> None:
        """Take the stream to open from TwiML fetched some other way (a captured replay)."""
        self.twiml = body
        if not self._take_stream(ET.fromstring(body)):
            raise ValueError("TwiML has no <Connect><Stream>")

    def _take_stream(self, response: ET.Element) -> bool:
        """The TwiML's ``<Connect><Stream>``, if it has one, is the next stream to open."""
        connect = response.find("./Connect")
        stream = connect.find("Stream") if connect is not None else None
        if connect is None or stream is None:
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
        self._hanging_up = True
        ws = self._ws
        tasks = [t for t in (self._clock_task, self._listen_task) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._clock_task = self._listen_task = None
        if ws is None:
            return
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
        self._ws = None
        self._closed.set()

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
        else:
            self._closed.set()

    async def _follow_action(self, ended: StreamSpan) -> None:
        """The stream ended and the call did not: ask ``action`` what next, as Twilio does,
        and run the TwiML it answers (``<Redirect>`` asks the next URL, and so on)."""
        self._playback.clear()  # the ended stream's queued audio goes with it
        self._marks.clear()
        url = self.action_url
        params = {
            **self.webhook_params(),
            "CallStatus": "in-progress",
            "StreamSid": ended.stream_sid,
        }
        for _ in range(MAX_REDIRECTS):
            signature = RequestValidator(self.auth_token).compute_signature(url, params)
            request = ActionRequest(at=time.monotonic(), url=url, status=0)
            self.result.actions.append(request)
            try:
                request.status, body = await asyncio.to_thread(self._post, url, params, signature)
            except OSError:  # no server answered: Twilio's own error message
                request.status, body = 0, ""
            if request.status != 200:
                self.result.twilio_said.append("An application error has occurred.")
                self._end_call("application error")
                return
            response = ET.fromstring(body)
            redirect = ""
            for verb in response:
                request.verbs.append(verb.tag)
                if verb.tag == "Say":
                    self.result.twilio_said.append(verb.text or "")
                elif verb.tag == "Pause":
                    await asyncio.sleep(float(verb.attrib.get("length", "1")))
                elif verb.tag == "Hangup":
                    self._end_call("hangup")
                    return
                elif verb.tag == "Redirect":
                    redirect = (verb.text or "").strip()
                    break
                elif verb.tag == "Connect" and self._take_stream(response):
                    try:
                        await self._connect_stream()
                    except (OSError, ConnectionClosed, TimeoutError):
                        self._end_call("stream failed")  # Twilio: 31920, then the call ends
                    return
            if not redirect:
                self._end_call("end of TwiML")
                return
            url = redirect
        self._end_call("too many redirects")

    def _end_call(self, how: str) -> None:
        self.result.ended_by_twilio = how
        self._closed.set()
        if self._clock_task is not None:
            self._clock_task.cancel()

    # --- the script -------------------------------------------------------------------------

    async def say(self, ulaw: bytes) -> None:
        """Speak (queue 20 ms frames) and return when the last frame has been sent."""
        frames = [
            ulaw[i : i + TWILIO_FRAME_BYTES].ljust(TWILIO_FRAME_BYTES, bytes([ULAW_SILENCE]))
            for i in range(0, len(ulaw), TWILIO_FRAME_BYTES)
        ]
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
