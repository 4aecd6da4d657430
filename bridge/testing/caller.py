"""A simulated Twilio caller: the webhook, the TwiML, and a Media Stream, as Twilio does them.

It signs the inbound-call webhook with the twilio library's validator, follows
the TwiML it gets back (the stream URL and its Parameters), then speaks Media
Streams: ``connected``, ``start``, one 20 ms μ-law frame every 20 ms in real
time (speech from a WAV, else line silence), ``stop`` when it hangs up. On the
way back it models Twilio's playback buffer: media queues and plays in real
time, a ``mark`` is echoed once the audio before it has played, ``clear``
flushes the buffer and echoes every pending mark. It records what the caller
heard, frame by frame, and when.
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
from .call_result import FRAME_S, CallResult, Utterance
from .speech import VOICED_RMS, frame_rms, load_speech

__all__ = ["CallResult", "SimulatedCaller", "Utterance", "WebhookRefused", "load_speech"]

SILENT_FRAME = bytes([ULAW_SILENCE]) * TWILIO_FRAME_BYTES


class WebhookRefused(Exception):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"webhook answered HTTP {status}")
        self.status, self.body = status, body


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
        self.result = CallResult(call_sid=self.call_sid, dialled_at=0.0)
        self._ws: ClientConnection | None = None
        self._speech: deque[bytes] = deque()
        self._speech_done = asyncio.Event()
        self._speech_done.set()
        self._playback = bytearray()
        self._played_bytes = 0
        self._queued_bytes = 0
        self._marks: deque[tuple[str, int]] = deque()  # (name, queued bytes when it arrived)
        self._seq = 0
        self._tasks: list[asyncio.Task[Any]] = []
        self._closed = asyncio.Event()
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
        url = self.public_url + self.webhook_path
        body = urllib.parse.urlencode(self.webhook_params()).encode()
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
        self.twiml = body
        stream = ET.fromstring(body).find("./Connect/Stream")
        if stream is None:
            raise ValueError("TwiML has no <Connect><Stream>")
        self.stream_url = stream.attrib["url"]
        self.parameters = {p.attrib["name"]: p.attrib["value"] for p in stream.findall("Parameter")}
        return body

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
        headers = {}
        if self.sign_upgrade:
            headers["X-Twilio-Signature"] = RequestValidator(self.auth_token).compute_signature(
                self.stream_url, {}
            )
        self._ws = await connect(
            self.stream_url, additional_headers=headers, open_timeout=10, compression=None
        )
        self._seq = 1
        try:
            connected, start = self.start_frames()
            for frame in (connected, *before_start, start):
                await self._ws.send(frame)
        except ConnectionClosed:  # the bridge refused the stream at once
            self._record_close()
            self._closed.set()
            return
        self.result.stream_started_at = time.monotonic()
        self._tasks = [
            asyncio.create_task(self._clock(), name="caller_clock"),
            asyncio.create_task(self._listen(), name="caller_listen"),
        ]

    async def hang_up(self) -> None:
        ws = self._ws
        if ws is None:
            return
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
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
        self._record_close()
        self._ws = None

    def _record_close(self) -> None:
        if self._ws is not None and self.result.close_code is None:
            self.result.close_code = self._ws.close_code
            self.result.close_reason = self._ws.close_reason or ""
            self.result.unplayed_at_close = len(self._playback)

    async def _clock(self) -> None:
        """Every 20 ms: send one frame, play one frame, echo marks that have played."""
        assert self._ws is not None
        ws, result = self._ws, self.result
        try:
            await self._run_clock(ws, result)
        except ConnectionClosed:
            self._closed.set()
        finally:
            self._speech_done.set()  # nobody waits on speech a closed stream cannot send

    async def _run_clock(self, ws: ClientConnection, result: CallResult) -> None:
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
            self._seq += 1
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
            result.said += frame
            self._play_one()
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

    async def _listen(self) -> None:
        assert self._ws is not None
        try:
            async for raw in self._ws:
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
        finally:
            self._record_close()
            self._closed.set()

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
