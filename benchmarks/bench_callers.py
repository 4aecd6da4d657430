"""The benchmark's callers: N Twilio streams at real-time pace, from their own process.

Lean on purpose (no per-frame parsing beyond what timing needs), so that the
bridge, not the load, is what runs out first. Each caller sends its own
band-limited noise (seeded by its id), so the content of what comes back can
be checked: a frame that is not where it should be was reordered, or is
another call's.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import secrets
import time
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

import numpy as np
from twilio.request_validator import RequestValidator
from websockets.asyncio.client import ClientConnection, connect

from bridge.audio import pcm16_to_ulaw
from bridge.audio.resample import lowpass_taps

FRAME_S = 0.020
FRAME_BYTES = 160
PHASE_GROUPS = 10  # calls are spread over the 20 ms frame period in this many groups


@dataclass
class CallTrace:
    """What one caller sent and got back, in time.monotonic() seconds (shared by processes)."""

    call_id: int
    sent: list[float] = field(default_factory=list)  # departure of frame k
    received: list[tuple[float, int]] = field(default_factory=list)  # (arrival, bytes)
    audio_back: bytes = b""  # the μ-law that came back, for the content check
    error: str = ""


def caller_signal(call_id: int, frames: int) -> bytes:
    """Speech-level noise, band-limited to 3 kHz so it survives the phone chain intact."""
    rng = np.random.default_rng(call_id + 1)
    noise = rng.standard_normal(frames * FRAME_BYTES + 64)
    shaped = np.convolve(noise, lowpass_taps(63, 3000 / 8000, 6.0), mode="valid")
    shaped *= 3000 / shaped.std()
    pcm = np.clip(shaped[: frames * FRAME_BYTES], -32768, 32767).astype("<i2").tobytes()
    return pcm16_to_ulaw(pcm)


def _webhook(public_url: str, auth_token: str, call_sid: str) -> dict[str, str]:
    """The signed inbound-call webhook; returns the stream's parameters from the TwiML."""
    url = public_url + "/api/inbound-call"
    params = {
        "AccountSid": "AC" + "0" * 32,
        "CallSid": call_sid,
        "From": "+14155550123",
        "To": "+14155550100",
    }
    signature = RequestValidator(auth_token).compute_signature(url, params)
    request = urllib.request.Request(
        url,
        data=urllib.parse.urlencode(params).encode(),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": signature,
        },
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        stream = ET.fromstring(response.read()).find("./Connect/Stream")
    assert stream is not None, "TwiML without <Connect><Stream>"
    return {p.attrib["name"]: p.attrib["value"] for p in stream.findall("Parameter")}


class BenchCaller:
    def __init__(self, call_id: int, ws: ClientConnection, stream_sid: str, frames: int):
        self.trace = CallTrace(call_id)
        self.ws = ws
        self.stream_sid = stream_sid
        signal = caller_signal(call_id, frames)
        self._payloads = [
            base64.b64encode(signal[i : i + FRAME_BYTES]).decode()
            for i in range(0, len(signal), FRAME_BYTES)
        ]
        self._back = bytearray()
        self._seq = 2

    async def send_frame(self, k: int) -> None:
        self._seq += 1
        message = (
            f'{{"event":"media","sequenceNumber":"{self._seq}","media":{{"track":"inbound",'
            f'"chunk":"{k + 1}","timestamp":"{k * 20}","payload":"{self._payloads[k]}"}},'
            f'"streamSid":"{self.stream_sid}"}}'
        )
        self.trace.sent.append(time.monotonic())
        await self.ws.send(message)

    async def receive(self) -> None:
        """Time every media frame; echo marks as Twilio does, once their audio has played."""
        received = self.trace.received
        marks: list[tuple[float, str]] = []
        played_until = 0.0
        with contextlib.suppress(Exception):
            async for raw in self.ws:
                now = time.monotonic()
                if isinstance(raw, str) and '"media"' in raw[:24]:
                    payload = raw[raw.index('"payload":"') + 11 : raw.rindex('"')]
                    audio = base64.b64decode(payload)
                    received.append((now, len(audio)))
                    self._back += audio
                    played_until = max(played_until, now) + len(audio) / 8000
                elif '"mark"' in raw[:24]:
                    marks.append((played_until, json.loads(raw)["mark"]["name"]))
                while marks and marks[0][0] <= now:
                    _, name = marks.pop(0)
                    self._seq += 1
                    await self.ws.send(
                        f'{{"event":"mark","sequenceNumber":"{self._seq}",'
                        f'"streamSid":"{self.stream_sid}","mark":{{"name":"{name}"}}}}'
                    )
        self.trace.audio_back = bytes(self._back)


async def run_callers(
    stream_urls: list[str],
    public_urls: list[str | None],
    auth_token: str,
    calls: int,
    seconds: float,
    on_start: asyncio.Future[float] | None = None,
) -> list[CallTrace]:
    """Dial ``calls`` streams one by one, then all speak for ``seconds`` at real-time pace.

    Calls go round-robin over the servers, as a load balancer would send them. With
    a public URL, each call gets its stream token from the bridge's signed
    webhook, as Twilio's would. Each call keys in its id on the keypad first, so
    the echo on the Gemini side can be matched to it.
    """
    frames = int(seconds / FRAME_S)
    callers: list[BenchCaller] = []
    receivers: list[asyncio.Task[None]] = []
    run = secrets.randbits(64)  # a CallSid is answered once, fleet-wide: never reuse one
    try:
        for call_id in range(calls):
            call_sid = f"CA{run:016x}{call_id:016x}"
            params = {"callSid": call_sid}
            server = call_id % len(stream_urls)
            if public_url := public_urls[server]:
                params = await asyncio.to_thread(_webhook, public_url, auth_token, call_sid)
            ws = await connect(
                stream_urls[server], open_timeout=10, compression=None, max_queue=None
            )
            stream_sid = f"MZ{call_id:032x}"
            await ws.send(
                json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})
            )
            await ws.send(
                json.dumps(
                    {
                        "event": "start",
                        "sequenceNumber": "1",
                        "start": {
                            "accountSid": "AC" + "0" * 32,
                            "streamSid": stream_sid,
                            "callSid": call_sid,
                            "tracks": ["inbound"],
                            "mediaFormat": {
                                "encoding": "audio/x-mulaw",
                                "sampleRate": 8000,
                                "channels": 1,
                            },
                            "customParameters": params,
                        },
                        "streamSid": stream_sid,
                    }
                )
            )
            for digit in f"{call_id:04d}":
                await ws.send(
                    json.dumps(
                        {
                            "event": "dtmf",
                            "streamSid": stream_sid,
                            "sequenceNumber": "2",
                            "dtmf": {"track": "inbound_track", "digit": digit},
                        }
                    )
                )
            caller = BenchCaller(call_id, ws, stream_sid, frames)
            callers.append(caller)
            receivers.append(asyncio.create_task(caller.receive()))
        await asyncio.sleep(1.0)  # every Gemini session open and idle before timing starts

        start = time.monotonic() + 0.1
        if on_start is not None:
            on_start.set_result(start)
        groups = [callers[g::PHASE_GROUPS] for g in range(PHASE_GROUPS)]
        for k in range(frames):
            for g, group in enumerate(groups):
                due = start + k * FRAME_S + g * FRAME_S / PHASE_GROUPS
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                for caller in group:
                    try:
                        await caller.send_frame(k)
                    except Exception as exc:  # one call's failure is that call's figure
                        caller.trace.error = caller.trace.error or repr(exc)
        await asyncio.sleep(0.5)  # the last echoes
        for caller in callers:
            with contextlib.suppress(Exception):
                await caller.ws.send(
                    json.dumps({"event": "stop", "streamSid": caller.stream_sid, "stop": {}})
                )
                await caller.ws.close()
        async with asyncio.timeout(10):
            await asyncio.gather(*receivers, return_exceptions=True)
    finally:
        for task in receivers:
            task.cancel()
        for caller in callers:
            with contextlib.suppress(Exception):
                await caller.ws.close()
    return [caller.trace for caller in callers]
