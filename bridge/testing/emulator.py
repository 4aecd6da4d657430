"""A Gemini Live emulator: a real WebSocket server speaking BidiGenerateContent.

It is what ``bridge demo`` and the end-to-end tests talk to instead of Google,
and it is as strict as Google where a bridge can go wrong: the key must be
right, ``setup`` must come first and hold only fields Live knows (else close
1007, as Google does), the model must exist (else 1008). It hears the caller
with a simple energy VAD on the 16 kHz input, answers each caller turn with
bundled speech at 24 kHz in bursts faster than real time (as Gemini does),
and sends ``interrupted`` when the caller talks while its answer is still
playing. Every client message is recorded for tests to inspect.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from importlib import resources
from typing import Any

import numpy as np
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from ..gemini.protocol import (
    ClientMessage,
    GeminiProtocolError,
    UsageMetadata,
    parse_client_message,
    resumption_update_message,
    server_content_message,
    setup_complete_message,
    setup_field,
    unknown_setup_fields,
)

log = logging.getLogger(__name__)

AI_STUDIO_PATHS = frozenset(
    f"/ws/google.ai.generativelanguage.{v}.GenerativeService.BidiGenerateContent"
    for v in ("v1beta", "v1alpha")
)
VERTEX_PATHS = frozenset(
    f"/ws/google.cloud.aiplatform.{v}.LlmBidiService/BidiGenerateContent" for v in ("v1beta1", "v1")
)
KNOWN_MODELS = frozenset(
    {
        "gemini-3.8-live",
        "gemini-3.8-live-extended-thinking",
        "gemini-3.1-flash-live-preview",
        "gemini-2.5-flash-native-audio-preview-12-2025",
        "gemini-2.5-flash-native-audio-latest",
        "gemini-live-2.5-flash-native-audio",
    }
)
# What 3.x models refuse in setup (Google: 1007, or a setup that never completes).
NOT_ON_3X = (
    ("generationConfig", "thinkingConfig"),
    ("generationConfig", "enableAffectiveDialog"),
    ("proactivity",),
)
BLOCK_MS = 20
INPUT_RATE = 16000
OUTPUT_RATE = 24000


def bundled_reply() -> bytes:
    """An assistant's spoken answer, 24 kHz PCM16 mono (~12 s)."""
    return resources.files("bridge.testing").joinpath("data/assistant_reply_24k.pcm").read_bytes()


@dataclass
class EmulatorOptions:
    api_key: str | None = "emulator-key"  # expected x-goog-api-key; None accepts any
    bearer_token: str | None = None  # expected Authorization: Bearer (Vertex)
    reply_pcm: bytes | None = None  # 24 kHz PCM16; the bundled answer when None
    reply_seconds: float | None = None  # cut each answer to this length
    burst_factor: float = 4.0  # answer audio is sent this much faster than real time
    chunk_ms: int = 40
    response_delay_s: float = 0.1  # "thinking" time before the first answer chunk
    vad_threshold_rms: float = 300.0  # int16 RMS over 20 ms; phone speech is well above
    vad_start_ms: int = 60
    vad_end_silence_ms: int = 500
    answer_text: str = "Thanks for calling. Here is what I found about your order."


@dataclass
class EmulatedSession:
    """What one connection received and did; tests read these."""

    path: str
    auth: str  # "api_key" | "bearer"
    setup: dict[str, Any] = field(default_factory=dict)
    messages: list[ClientMessage] = field(default_factory=list)
    audio_in: bytearray = field(default_factory=bytearray)
    caller_turns: int = 0
    answers_started: int = 0
    interruptions: int = 0
    close_code: int | None = None
    close_reason: str = ""


async def _close(ws: ServerConnection, code: int, reason: str) -> None:
    """Close as Google does; a close reason may carry at most 123 bytes."""
    await ws.close(code, reason.encode()[:123].decode(errors="ignore"))


class _Vad:
    """Energy VAD on 20 ms blocks: speech after ``start_ms`` voiced, end after ``end_ms`` quiet."""

    def __init__(self, options: EmulatorOptions) -> None:
        self._threshold = options.vad_threshold_rms
        self._start_blocks = max(1, options.vad_start_ms // BLOCK_MS)
        self._end_blocks = max(1, options.vad_end_silence_ms // BLOCK_MS)
        self._buffer = bytearray()
        self._voiced = 0
        self._quiet = 0
        self.in_speech = False
        self.speech_blocks = 0

    def feed(self, pcm: bytes) -> list[str]:
        """Returns the events in this audio: "start" and/or "end"."""
        events = []
        self._buffer += pcm
        block_bytes = INPUT_RATE * BLOCK_MS // 1000 * 2
        while len(self._buffer) >= block_bytes:
            block = np.frombuffer(bytes(self._buffer[:block_bytes]), dtype="<i2").astype(np.float32)
            del self._buffer[:block_bytes]
            voiced = float(np.sqrt(np.mean(block * block))) > self._threshold
            if voiced:
                self._voiced += 1
                self._quiet = 0
                if self.in_speech:
                    self.speech_blocks += 1
                elif self._voiced >= self._start_blocks:
                    self.in_speech = True
                    self.speech_blocks = self._voiced
                    events.append("start")
            else:
                self._voiced = 0
                if self.in_speech:
                    self._quiet += 1
                    if self._quiet >= self._end_blocks:
                        self.in_speech = False
                        events.append("end")
        return events


class _Conversation:
    """One connection's behaviour after setup: hear turns, answer, get interrupted."""

    def __init__(self, ws: ServerConnection, session: EmulatedSession, options: EmulatorOptions):
        self._ws = ws
        self._session = session
        self._options = options
        self._vad = _Vad(options)
        self._answer: asyncio.Task[None] | None = None
        self._playing_until = 0.0  # when the caller finishes hearing the answer, in real time
        self._handles = itertools.count(1)
        reply = options.reply_pcm if options.reply_pcm is not None else bundled_reply()
        if options.reply_seconds is not None:
            reply = reply[: int(options.reply_seconds * OUTPUT_RATE) * 2]
        self._reply = reply

    async def run(self) -> None:
        try:
            async for raw in self._ws:
                try:
                    message = parse_client_message(raw)
                except GeminiProtocolError as exc:
                    await _close(self._ws, 1007, f"Invalid JSON payload received. {exc}")
                    return
                self._session.messages.append(message)
                if message.setup is not None:
                    await _close(self._ws, 1007, "setup may only be sent once")
                    return
                if message.audio is not None:
                    await self._hear(message.audio)
                elif message.is_client_content and message.client_turn_complete:
                    await self._start_answer()
                elif message.text is not None:
                    await self._start_answer()
        finally:
            await self._stop_answer()

    async def _hear(self, pcm: bytes) -> None:
        self._session.audio_in += pcm
        for event in self._vad.feed(pcm):
            if event == "start":
                await self._caller_started()
            else:
                await self._caller_finished()

    def _model_speaking(self) -> bool:
        answering = self._answer is not None and not self._answer.done()
        return answering or time.monotonic() < self._playing_until

    async def _caller_started(self) -> None:
        if not self._model_speaking():
            return
        generating = self._answer is not None and not self._answer.done()
        await self._stop_answer()
        self._playing_until = 0.0
        self._session.interruptions += 1
        await self._ws.send(server_content_message(interrupted=True, turn_complete=generating))

    async def _caller_finished(self) -> None:
        self._session.caller_turns += 1
        seconds = self._vad.speech_blocks * BLOCK_MS / 1000
        await self._ws.send(
            server_content_message(input_transcription=f"(caller spoke for {seconds:.1f} s)")
        )
        await self._start_answer()

    async def _start_answer(self) -> None:
        await self._stop_answer()
        self._answer = asyncio.create_task(self._speak())

    async def _stop_answer(self) -> None:
        if self._answer is not None and not self._answer.done():
            self._answer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._answer
        self._answer = None

    async def _speak(self) -> None:
        options = self._options
        await asyncio.sleep(options.response_delay_s)
        self._session.answers_started += 1
        chunk_bytes = OUTPUT_RATE * options.chunk_ms // 1000 * 2
        interval = options.chunk_ms / 1000 / options.burst_factor
        self._playing_until = time.monotonic() + len(self._reply) / 2 / OUTPUT_RATE
        next_send = time.monotonic()
        for i in range(0, len(self._reply), chunk_bytes):
            chunk = self._reply[i : i + chunk_bytes]
            # 3.x models combine fields: the first chunk carries its transcription.
            text = options.answer_text if i == 0 else None
            await self._ws.send(server_content_message(audio=chunk, output_transcription=text))
            next_send += interval
            await asyncio.sleep(max(0.0, next_send - time.monotonic()))
        await self._ws.send(server_content_message(generation_complete=True))
        usage = UsageMetadata(prompt_tokens=100, response_tokens=25, total_tokens=125)
        await self._ws.send(server_content_message(turn_complete=True, usage=usage))
        await self._ws.send(resumption_update_message(self._new_handle(), resumable=True))

    def _new_handle(self) -> str:
        return f"emulated-handle-{next(self._handles)}-{secrets.token_hex(4)}"


class GeminiEmulator:
    """``await start()``, point the bridge at ``url``, inspect ``sessions``, ``await stop()``."""

    def __init__(self, options: EmulatorOptions | None = None) -> None:
        self.options = options or EmulatorOptions()
        self.sessions: list[EmulatedSession] = []
        self._server: Server | None = None
        self._open: set[ServerConnection] = set()
        self.port = 0
        self.host = "127.0.0.1"

    @property
    def url(self) -> str:
        """The AI Studio endpoint on this emulator."""
        return f"ws://{self.host}:{self.port}" + sorted(AI_STUDIO_PATHS)[0]

    @property
    def vertex_url(self) -> str:
        return f"ws://{self.host}:{self.port}" + sorted(VERTEX_PATHS)[0]

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> GeminiEmulator:
        self._server = await serve(
            self._handle,
            host,
            port,
            process_request=self._check_path,
            ping_interval=None,
            max_size=4 * 1024 * 1024,
            compression=None,
        )
        self.host = host
        self.port = next(iter(self._server.sockets)).getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def __aenter__(self) -> GeminiEmulator:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _check_path(self, connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0].replace("//", "/")
        if path in AI_STUDIO_PATHS or path in VERTEX_PATHS:
            return None
        return connection.respond(HTTPStatus.NOT_FOUND, "Not Found\n")

    def _authenticate(self, headers: Headers) -> tuple[str | None, tuple[int, str] | None]:
        key = headers.get("x-goog-api-key")
        bearer = headers.get("authorization", "")
        if key is not None:
            if self.options.api_key is not None and key != self.options.api_key:
                return None, (1007, "API key not valid. Please pass a valid API key.")
            return "api_key", None
        if bearer.lower().startswith("bearer "):
            token = bearer[7:].strip()
            if self.options.bearer_token is not None and token != self.options.bearer_token:
                return None, (1008, "Request had invalid authentication credentials.")
            return "bearer", None
        return None, (
            1008,
            "Method doesn't allow unregistered callers (callers without established identity). "
            "Please use API Key or other form of API consumer identity to call this API.",
        )

    async def _handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        auth, refusal = self._authenticate(ws.request.headers)
        session = EmulatedSession(path=ws.request.path, auth=auth or "none")
        self.sessions.append(session)
        self._open.add(ws)
        try:
            if refusal is not None:
                await _close(ws, *refusal)
                return
            try:
                async with asyncio.timeout(10):
                    first = parse_client_message(await ws.recv())
            except (TimeoutError, GeminiProtocolError):
                await _close(ws, 1007, "Invalid JSON payload received. Expected setup first.")
                return
            session.messages.append(first)
            if first.setup is None:
                await ws.close(
                    1007, "Invalid JSON payload received. The first message must be setup."
                )
                return
            problem = self._check_setup(first.setup, session)
            if problem is not None:
                await _close(ws, *problem)
                return
            session.setup = first.setup
            await ws.send(setup_complete_message(secrets.token_hex(8)))
            await _Conversation(ws, session, self.options).run()
        except ConnectionClosed:
            pass
        finally:
            self._open.discard(ws)
            session.close_code = ws.close_code
            session.close_reason = ws.close_reason or ""

    async def drop_all(self, code: int = 1011, reason: str = "Internal error encountered.") -> int:
        """Close every open session as Google does on a fault; returns how many."""
        connections = list(self._open)
        await asyncio.gather(*(_close(ws, code, reason) for ws in connections))
        return len(connections)

    def _check_setup(
        self, setup: dict[str, Any], session: EmulatedSession
    ) -> tuple[int, str] | None:
        unknown = unknown_setup_fields(setup)
        if unknown:
            path, _, name = unknown[0].rpartition(".")
            return 1007, (
                f"Invalid JSON payload received. Unknown name \"{name}\" at '{path}': "
                "Cannot find field."
            )
        model = setup_field(setup, "model")
        if not isinstance(model, str):
            return 1007, "Invalid JSON payload received. setup.model is required."
        name = model.rsplit("/", 1)[-1]
        prefix_ok = (
            model == f"models/{name}" if session.path in AI_STUDIO_PATHS else "/models/" in model
        )
        if name not in KNOWN_MODELS or not prefix_ok:
            return 1008, f"{model} is not found for API version v1beta, or is not supported"
        if name.startswith("gemini-3"):
            for path in NOT_ON_3X:
                if setup_field(setup, *path) is not None:
                    return (
                        1007,
                        f"Invalid JSON payload: {'.'.join(path)} is not supported by {name}",
                    )
        modalities = setup_field(setup, "generationConfig", "responseModalities")
        if modalities != ["AUDIO"]:
            return 1007, "Request contains an invalid argument: responseModalities must be [AUDIO]."
        return None
