"""What an outside review did to a running bridge, as functions over raw sockets.

Each one sends what an attacker would, byte for byte where it matters (frames
compressed whether or not compression was agreed; a chunked body with a forged
signature; audio far faster than real time), and reports what the server did.
``tests/security`` asserts on them; ``scripts/measure_attacks.py`` runs them at the
review's size and prints the figures of docs/security.md.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import struct
import time
import zlib
from dataclasses import dataclass, field

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from bridge.testing.caller import SimulatedCaller
from bridge.twilio.media_streams import media_event

CLOSE_NO_FRAME = 1006  # the socket ended without a close frame
TEXT, CLOSE = 0x1, 0x8


def client_frame(payload: bytes, *, opcode: int = TEXT, rsv1: bool = False) -> bytes:
    """One masked client frame; ``rsv1`` marks it compressed (permessage-deflate)."""
    head = 0x80 | opcode | (0x40 if rsv1 else 0)
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", head, 0x80 | size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", head, 0x80 | 126, size)
    else:
        header = struct.pack("!BBQ", head, 0x80 | 127, size)
    mask = os.urandom(4)
    key = (mask * (size // 4 + 1))[:size]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(size, "big")
    return header + mask + masked


def deflated(message: bytes, window_bits: int = 12) -> bytes:
    """``message`` as permessage-deflate sends it (raw deflate, sync flush tail removed)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -window_bits)
    data = compressor.compress(message) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return data[:-4]


@dataclass
class RawWebSocket:
    """A WebSocket client that sends whatever bytes it is given."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    status: int
    headers: dict[str, str]  # lower-cased names

    async def send(self, data: bytes) -> bool:
        """False if the server has already closed the socket."""
        try:
            self.writer.write(data)
            await asyncio.wait_for(self.writer.drain(), 10)
            return True
        except (ConnectionError, TimeoutError):
            return False

    async def close_code(self, timeout: float) -> int | None:
        """The code of the server's close frame (``CLOSE_NO_FRAME`` if the socket just
        ended), or None if it is still open after ``timeout``."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    head = await self.reader.readexactly(2)
                    size = head[1] & 0x7F
                    if size == 126:
                        size = struct.unpack("!H", await self.reader.readexactly(2))[0]
                    elif size == 127:
                        size = struct.unpack("!Q", await self.reader.readexactly(8))[0]
                    payload = await self.reader.readexactly(size)
                    if head[0] & 0x0F == CLOSE:
                        return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
        except TimeoutError:
            return None
        except (asyncio.IncompleteReadError, ConnectionError):
            return CLOSE_NO_FRAME

    def close(self) -> None:
        self.writer.close()


async def open_websocket(
    port: int, *, path: str = "/voice-stream", offer_deflate: bool = False
) -> RawWebSocket:
    """The upgrade request a browser or Twilio sends; ``offer_deflate`` asks for
    permessage-deflate as most WebSocket clients do."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    if offer_deflate:
        lines.append("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits")
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        if name:
            headers[name.strip().lower()] = value.strip()
    status = int(status_line.split()[1])
    if status != 101:  # the body of a refusal, if any, is not WebSocket frames
        writer.close()
    return RawWebSocket(reader, writer, status, headers)


@dataclass
class BurstResult:
    connections: int
    upgraded: int  # 101 Switching Protocols
    negotiated: int  # answered with permessage-deflate
    wire_bytes: int  # compressed bytes sent in all
    inflated_bytes: int  # what they would inflate to
    close_codes: list[int | None] = field(default_factory=list)


async def compression_burst(
    port: int, connections: int, messages: int, message_bytes: int = 120 * 1024
) -> BurstResult:
    """The review's burst: ``connections`` sockets offer permessage-deflate, then each
    sends ``messages`` compressed frames of ``message_bytes`` once inflated, before any
    ``start``, whether or not the server agreed to compression."""
    frame = client_frame(deflated(b"a" * message_bytes), rsv1=True)

    async def one() -> tuple[bool, bool, int | None]:
        ws = await open_websocket(port, offer_deflate=True)
        if ws.status != 101:
            return False, False, None
        negotiated = "permessage-deflate" in ws.headers.get("sec-websocket-extensions", "")
        await ws.send(frame * messages)
        code = await ws.close_code(10)
        ws.close()
        return True, negotiated, code

    results = await asyncio.gather(*(one() for _ in range(connections)))
    return BurstResult(
        connections=connections,
        upgraded=sum(upgraded for upgraded, _, _ in results),
        negotiated=sum(negotiated for _, negotiated, _ in results),
        wire_bytes=len(frame) * messages * connections,
        inflated_bytes=message_bytes * messages * connections,
        close_codes=[code for _, _, code in results],
    )


async def idle_streams(port: int, count: int, *, batch: int = 200) -> list[RawWebSocket]:
    """``count`` upgrades to /voice-stream that then say nothing (no ``start``), opened
    ``batch`` at a time; refused ones come back with their HTTP status."""
    opened: list[RawWebSocket] = []
    for first in range(0, count, batch):
        size = min(batch, count - first)
        opened += await asyncio.gather(*(open_websocket(port) for _ in range(size)))
    return opened


@dataclass
class ChunkedResult:
    status: int | None  # None: no answer
    body_bytes_sent: int  # before the answer came (or the server hung up)
    answered_early: bool  # the answer came before the whole body was sent


async def chunked_post(
    port: int,
    path: str,
    total_bytes: int,
    *,
    chunk_bytes: int = 64 * 1024,
    field_bytes: int = 1_000_000,
    signature: str = "Zm9yZ2VkLXNpZ25hdHVyZQ==",
) -> ChunkedResult:
    """A form POST without Content-Length (``Transfer-Encoding: chunked``) and with a
    forged ``X-Twilio-Signature``: ``total_bytes`` of form fields, each ``field_bytes``
    long (under the 1 MiB per field and the 1,000 fields a form parser may allow)."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
    writer.write(
        (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"Transfer-Encoding: chunked\r\nX-Twilio-Signature: {signature}\r\n\r\n"
        ).encode()
    )
    answer = asyncio.ensure_future(reader.readuntil(b"\r\n"))
    field = b"Field=" + b"v" * (field_bytes - 7) + b"&"
    body = field * (total_bytes // len(field) + 1)
    sent = 0
    hung_up = False
    try:
        while sent < total_bytes and not answer.done():
            data = body[sent : sent + chunk_bytes]
            writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            await asyncio.wait_for(writer.drain(), 10)
            sent += len(data)
        if not answer.done():
            writer.write(b"0\r\n\r\n")
            await writer.drain()
    except (ConnectionError, TimeoutError):
        hung_up = True  # the server stopped reading; its answer may be in already
    answered_early = answer.done() or hung_up
    try:
        status: int | None = int((await asyncio.wait_for(answer, 60)).split()[1])
    except (ConnectionError, TimeoutError, asyncio.IncompleteReadError, IndexError):
        status = None
    finally:
        writer.close()
    return ChunkedResult(status, sent, answered_early)


@dataclass
class FastAudioResult:
    close_code: int | None  # None: still open when the attack stopped
    close_reason: str
    audio_sent_s: float  # μ-law seconds the server accepted before it closed
    elapsed_s: float


async def fast_audio(
    caller: SimulatedCaller,
    *,
    payload_bytes: int,
    messages_per_s: float,
    seconds: float,
) -> FastAudioResult:
    """An authenticated stream (a signed webhook's token) that sends ``payload_bytes``
    of μ-law per media message at ``messages_per_s``, for up to ``seconds``."""
    await caller.fetch_twiml()
    payload = b"\xff" * payload_bytes
    async with connect(caller.stream_url, compression=None, max_size=None) as ws:
        for frame in caller.start_frames():
            await ws.send(frame)
        started = time.monotonic()
        sent = 0
        try:
            while (elapsed := time.monotonic() - started) < seconds:
                await asyncio.sleep(max(0.0, sent / messages_per_s - elapsed))
                await ws.send(
                    media_event(
                        stream_sid=caller.stream_sid,
                        sequence_number=sent + 2,
                        chunk=sent + 1,
                        timestamp_ms=sent * 20,
                        ulaw=payload,
                    )
                )
                sent += 1
        except ConnectionClosed:
            pass
        elapsed = time.monotonic() - started
        with contextlib.suppress(ConnectionClosed, TimeoutError):
            async with asyncio.timeout(1):  # a close the server began as we stopped
                async for _ in ws:
                    pass
        closed = ws.close_code is not None
        return FastAudioResult(
            close_code=ws.close_code if closed else None,
            close_reason=ws.close_reason or "",
            audio_sent_s=sent * payload_bytes / 8000,
            elapsed_s=elapsed,
        )
