"""A Gemini Live emulator: a real WebSocket server speaking BidiGenerateContent.

It is what ``gemini-phone-bridge demo`` and the end-to-end tests talk to instead of Google,
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
import json
import logging
import math
import random
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import Enum
from http import HTTPStatus
from importlib import resources
from typing import Any

import numpy as np
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from ..audio import ulaw_to_pcm16
from ..gemini.server import (
    ClientMessage,
    go_away_message,
    parse_client_message,
    resumption_update_message,
    server_content_message,
    setup_complete_message,
    setup_field,
    tool_call_cancellation_message,
    tool_call_message,
    unknown_setup_fields,
)
from ..gemini.wire import FunctionCall, FunctionResponse, GeminiProtocolError, UsageMetadata

log = logging.getLogger(__name__)

AI_STUDIO_PATHS = frozenset(
    f"/ws/google.ai.generativelanguage.{v}.GenerativeService.BidiGenerateContent"
    for v in ("v1beta", "v1alpha")
)
AI_STUDIO_PATH = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"
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
NOT_ON_3X: tuple[tuple[str, ...], ...] = (
    ("generationConfig", "thinkingConfig"),
    ("generationConfig", "enableAffectiveDialog"),
    ("proactivity",),
)
BLOCK_MS = 20
INPUT_RATE = 16000
OUTPUT_RATE = 24000


# What `bridge emulator` expects by default; long enough for the bridge's secret policy.
DEFAULT_API_KEY = "offline-emulator-key"


def bundled_reply() -> bytes:
    """An assistant's spoken answer, 24 kHz PCM16 mono (~12 s)."""
    return resources.files("bridge.testing").joinpath("data/assistant_reply_24k.pcm").read_bytes()


class Moment(Enum):
    """Moments of a conversation a fault can be timed to (the first time each comes)."""

    CALLER_SPEAKING = "caller speaking"  # its VAD heard the caller start
    GENERATING = "generating"  # the first chunk of an answer went out
    ANSWER_PLAYING = "answer playing"  # the answer is all sent; the caller still hears it
    IDLE = "idle"  # the answer has played out at the caller (real time)
    TOOL_CALL_PENDING = "tool call pending"  # a tool call went out, no answer yet


@dataclass
class FaultPlan:
    """Faults for one connection; times are seconds after its ``setupComplete``."""

    go_away_at: float | None = None  # send goAway, then close 1011 when time_left runs out
    go_away_on: Moment | None = None  # ... or at this moment (plus go_away_at, if set)
    go_away_time_left: float = 10.0
    close_at: float | None = None  # close with close_code (1011: Google's internal error)
    close_code: int = 1011
    stall_at: float | None = None  # from then on hear the caller but never answer
    refuse_setup: bool = False  # close 1011 "service unavailable" instead of setupComplete
    setup_delay: float = 0.0  # wait this long before setupComplete
    setup_error: dict[str, Any] | None = None  # answer setup with this error frame, then hang


@dataclass
class ScriptedToolCall:
    """Make the emulated model call tools: on the caller's Nth turn, or on a text input."""

    calls: list[FunctionCall]
    on_caller_turn: int | None = None  # 1 = the caller's first turn
    on_text: str | None = None  # a realtimeInput.text / clientContent containing this
    cancel_after_s: float | None = None  # then cancel them all (toolCallCancellation)


@dataclass
class EmulatorOptions:
    api_key: str | None = DEFAULT_API_KEY  # expected x-goog-api-key; None accepts any
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
    faults: FaultPlan | None = None  # for every connection
    faults_by_connection: dict[int, FaultPlan] = field(default_factory=dict)  # by index, from 0
    reject_unknown_handles: bool = True
    tool_script: list[ScriptedToolCall] = field(default_factory=list)
    # The benchmark's Gemini: every audio chunk comes straight back as 24 kHz PCM, as
    # Gemini answers whatever it is sent (16 kHz PCM, or the bare relay's 8 kHz μ-law),
    # timed on arrival and departure; nothing else is kept.
    echo: bool = False


@dataclass
class EmulatedSession:
    """What one connection received and did; tests read these."""

    path: str
    auth: str  # "api_key" | "bearer"
    setup: dict[str, Any] = field(default_factory=dict)
    messages: list[ClientMessage] = field(default_factory=list)
    audio_in: bytearray = field(default_factory=bytearray)
    resumed_from: str | None = None  # the handle its setup carried
    quota_project: str | None = None  # x-goog-user-project, when sent
    client_turns: list[str] = field(default_factory=list)  # texts of clientContent turns
    texts: list[str] = field(default_factory=list)  # realtimeInput.text inputs
    tool_calls_sent: list[FunctionCall] = field(default_factory=list)
    tool_responses: list[FunctionResponse] = field(default_factory=list)
    unknown_tool_responses: list[FunctionResponse] = field(
        default_factory=list
    )  # ids it never sent
    continued_from: list[float] = field(default_factory=list)  # answers resumed part-way
    caller_turns: int = 0
    answers_started: int = 0
    answers_completed: int = 0
    answers: list[tuple[float, float, bool]] = field(default_factory=list)  # start, s, completed
    interruptions: int = 0
    close_code: int | None = None
    close_reason: str = ""
    keypad: str = ""  # digits seen in keypad texts (echo mode: the benchmark's call id)
    echo_in: list[tuple[float, int]] = field(default_factory=list)  # (arrived, bytes)
    echo_out: list[float] = field(default_factory=list)  # when each echo was sent


def _send(ws: ServerConnection, message: str) -> Awaitable[None]:
    """Gemini sends its JSON in binary frames, not text ones: so does the emulator."""
    return ws.send(message.encode())


async def _close(ws: ServerConnection, code: int, reason: str) -> None:
    """Close as Google does; a close reason may carry at most 123 bytes."""
    await ws.close(code, reason.encode()[:123].decode(errors="ignore"))


class _Vad:
    """Energy VAD on 20 ms blocks: speech after ``start_ms`` voiced, end after ``end_ms`` quiet."""

    def __init__(self, options: EmulatorOptions, end_silence_ms: int | None = None) -> None:
        self._threshold = options.vad_threshold_rms
        self._start_blocks = max(1, options.vad_start_ms // BLOCK_MS)
        end_ms = end_silence_ms if end_silence_ms is not None else options.vad_end_silence_ms
        self._end_blocks = max(1, end_ms // BLOCK_MS)
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


# 16 → 24 kHz by linear interpolation: outputs 3m, 3m+1, 3m+2 sit at 2m, 2m+2/3, 2m+4/3
# input samples, from the pair (2m, 2m+1) and the next pair's first sample.
_FROM_PAIR = np.array([[1, 1 / 3, 0], [0, 2 / 3, 2 / 3]], dtype=np.float32)
_FROM_NEXT = np.array([0, 0, 1 / 3], dtype=np.float32)
# 8 → 24 kHz: outputs 3m, 3m+1, 3m+2 sit at m, m+1/3, m+2/3 input samples.
_FROM_THIS = np.array([1, 2 / 3, 1 / 3], dtype=np.float32)
_FROM_AFTER = np.array([0, 1 / 3, 2 / 3], dtype=np.float32)


class _Echo:
    """Echo mode: each audio chunk is sent straight back, for the benchmark."""

    def __init__(self, ws: ServerConnection, session: EmulatedSession) -> None:
        self._ws = ws
        self._session = session
        self._last = 0.0  # the previous chunk's last sample, where interpolation resumes

    def _known(self, pcm: bytes) -> np.ndarray:
        """The chunk's samples after the previous chunk's last: outputs run one sample late."""
        samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32)
        known = np.concatenate(([self._last], samples))
        self._last = float(known[-1])
        return known

    def _to_24k(self, pcm16k: bytes) -> bytes:
        """Linear interpolation, one input sample late (62.5 µs): no lookahead, no filter."""
        known = self._known(pcm16k)
        n = len(known) - 1
        if n % 2 == 0:
            # Output j sits at 2j/3 input samples: each three outputs span two inputs.
            # Slices instead of np.interp: a third of the CPU, which the benchmark's
            # callers and server share.
            out = known[:n].reshape(-1, 2) @ _FROM_PAIR
            out += known[2 : n + 1 : 2, None] * _FROM_NEXT
            return bytes(out.astype("<i2").tobytes())
        at = np.arange(n * 3 // 2, dtype=np.float32) * (2 / 3)
        return bytes(np.interp(at, np.arange(n + 1), known).astype("<i2").tobytes())

    def _ulaw_to_24k(self, ulaw: bytes) -> bytes:
        """μ-law 8 kHz (the bare relay's) the same way, one input sample late (125 µs)."""
        known = self._known(ulaw_to_pcm16(ulaw))
        out = known[:-1, None] * _FROM_THIS + known[1:, None] * _FROM_AFTER
        return out.astype("<i2").tobytes()

    async def run(self) -> None:
        session, ws = self._session, self._ws
        digits = re.compile(r"\d")
        async for raw in ws:
            arrived = time.monotonic()
            message = parse_client_message(raw)
            if message.audio is not None:
                audio = message.audio
                mime = message.audio_mime or ""
                if mime.startswith("audio/x-mulaw"):
                    audio = self._ulaw_to_24k(audio)
                elif mime.endswith("rate=16000"):
                    audio = self._to_24k(audio)
                session.echo_in.append((arrived, len(message.audio)))
                await _send(ws, server_content_message(audio=audio))
                session.echo_out.append(time.monotonic())
            elif message.text is not None:
                session.keypad += "".join(digits.findall(message.text))


@dataclass
class _Memory:
    """What a conversation remembers across connections: a session resumed from a handle
    is the same conversation (here: which scripted tool calls it has made)."""

    script: list[ScriptedToolCall]


# How the bridge asks a new connection to finish an answer the old one was giving; the
# emulator follows it as a model would: it goes on after the words the caller heard.
_CONTINUE = re.compile(r'already heard you say: "(.*)" Continue', re.DOTALL)
_WORD = re.compile(r"[\w']+")


def _heard_words(words: list[str], heard: str) -> int:
    """How many of the answer's words, from its start, the quoted text holds."""
    said = [w.lower() for w in _WORD.findall(heard)]
    count = 0
    for word, heard_word in zip((w.lower() for w in words), said, strict=False):
        if _WORD.findall(word) != [heard_word]:
            break
        count += 1
    return count


class _Conversation:
    """One connection's behaviour after setup: hear turns, answer, get interrupted."""

    def __init__(
        self,
        ws: ServerConnection,
        session: EmulatedSession,
        options: EmulatorOptions,
        issue_handle: Callable[[], str],
        memory: _Memory,
    ):
        self._ws = ws
        self._session = session
        self._options = options
        self._issue_handle = issue_handle
        # Like Gemini, end the caller's turn after the silence the setup asked for.
        silence = setup_field(
            session.setup, "realtimeInputConfig", "automaticActivityDetection", "silenceDurationMs"
        )
        self._vad = _Vad(options, int(silence) if isinstance(silence, int | float) else None)
        self._memory = memory
        self._pending_tools: set[str] = set()
        self._cancel_tasks: set[asyncio.Task[None]] = set()
        self._answer: asyncio.Task[None] | None = None
        self.playing_until = 0.0  # when the caller finishes hearing the answer, in real time
        self.stalled = False
        self.moments = {moment: asyncio.Event() for moment in Moment}
        reply = options.reply_pcm if options.reply_pcm is not None else bundled_reply()
        if options.reply_seconds is not None:
            reply = reply[: int(options.reply_seconds * OUTPUT_RATE) * 2]
        self._reply = reply

    async def run(self) -> None:
        await _send(self._ws, resumption_update_message(self._issue_handle(), resumable=True))
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
                elif message.is_client_content:
                    texts = [
                        part["text"]
                        for turn in message.client_turns
                        for part in turn.get("parts", [])
                        if isinstance(part, dict) and isinstance(part.get("text"), str)
                    ]
                    self._session.client_turns.extend(texts)
                    if message.client_turn_complete:
                        await self._on_text(" ".join(texts))
                elif message.text is not None:
                    self._session.texts.append(message.text)
                    await self._on_text(message.text)
                elif message.tool_responses:
                    await self._on_tool_responses(message.tool_responses)
        finally:
            for task in self._cancel_tasks:
                task.cancel()
            await self._stop_answer()

    async def _on_text(self, text: str) -> None:
        if await self._call_tools(text=text):
            return
        continuation = _CONTINUE.search(text)
        await self._start_answer(heard=continuation.group(1) if continuation else None)

    async def _on_tool_responses(self, responses: tuple[FunctionResponse, ...]) -> None:
        for response in responses:
            if response.id in self._pending_tools:
                self._session.tool_responses.append(response)
                self._pending_tools.discard(response.id)
            else:  # a call this session never made (or cancelled): nothing to answer
                self._session.unknown_tool_responses.append(response)
                log.warning("toolResponse for an unknown call id %r", response.id)
        if not self._pending_tools and any(r in self._session.tool_responses for r in responses):
            await self._start_answer()  # the model speaks about the results

    def _reached(self, moment: Moment) -> None:
        self.moments[moment].set()

    async def _call_tools(self, *, turn: int | None = None, text: str | None = None) -> bool:
        """Send the scripted tool calls this turn or text triggers; True if any."""
        for entry in self._memory.script:
            hit_turn = turn is not None and entry.on_caller_turn == turn
            hit_text = text is not None and entry.on_text is not None and entry.on_text in text
            if not (hit_turn or hit_text):
                continue
            self._memory.script.remove(entry)
            await self._stop_answer()
            self._session.tool_calls_sent.extend(entry.calls)
            self._pending_tools |= {c.id for c in entry.calls}
            await _send(self._ws, tool_call_message(entry.calls))
            self._reached(Moment.TOOL_CALL_PENDING)
            if entry.cancel_after_s is not None:
                task = asyncio.create_task(self._cancel_later(entry))
                self._cancel_tasks.add(task)
            return True
        return False

    async def _cancel_later(self, entry: ScriptedToolCall) -> None:
        await asyncio.sleep(entry.cancel_after_s or 0)
        ids = [c.id for c in entry.calls if c.id in self._pending_tools]
        if ids:
            self._pending_tools -= set(ids)
            await _send(self._ws, tool_call_cancellation_message(ids))

    async def _hear(self, pcm: bytes) -> None:
        self._session.audio_in += pcm
        for event in self._vad.feed(pcm):
            if event == "start":
                self._reached(Moment.CALLER_SPEAKING)
                await self._caller_started()
            else:
                await self._caller_finished()

    def _model_speaking(self) -> bool:
        answering = self._answer is not None and not self._answer.done()
        return answering or time.monotonic() < self.playing_until

    async def _caller_started(self) -> None:
        if not self._model_speaking():
            return
        generating = self._answer is not None and not self._answer.done()
        await self._stop_answer()
        self.playing_until = 0.0
        self._session.interruptions += 1
        await _send(self._ws, server_content_message(interrupted=True, turn_complete=generating))

    async def _caller_finished(self) -> None:
        self._session.caller_turns += 1
        seconds = self._vad.speech_blocks * BLOCK_MS / 1000
        await _send(
            self._ws,
            server_content_message(input_transcription=f"(caller spoke for {seconds:.1f} s)"),
        )
        if not await self._call_tools(turn=self._session.caller_turns):
            await self._start_answer()

    async def _start_answer(self, heard: str | None = None) -> None:
        await self._stop_answer()
        if not self.stalled:  # a stalled Gemini hears everything and says nothing
            self._answer = asyncio.create_task(self._speak(heard))

    async def _stop_answer(self) -> None:
        if self._answer is not None and not self._answer.done():
            self._answer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._answer
        self._answer = None

    async def _speak(self, heard: str | None) -> None:
        """One answer: the reply's chunks faster than real time, each carrying its share of
        the answer's words as output transcription; after ``heard``, from the words on."""
        options = self._options
        await asyncio.sleep(options.response_delay_s)
        self._session.answers_started += 1
        # Mid-generation a session cannot be resumed: Google says so with an empty handle.
        await _send(self._ws, resumption_update_message(None, resumable=False))
        chunk_bytes = OUTPUT_RATE * options.chunk_ms // 1000 * 2
        chunks = [self._reply[i : i + chunk_bytes] for i in range(0, len(self._reply), chunk_bytes)]
        words = options.answer_text.split()
        first = 0
        if heard is not None and chunks and words:
            first = min(
                len(chunks), math.ceil(_heard_words(words, heard) * len(chunks) / len(words))
            )
            self._session.continued_from.append(first / len(chunks))
        interval = options.chunk_ms / 1000 / options.burst_factor
        seconds = (len(chunks) - first) * options.chunk_ms / 1000
        self.playing_until = time.monotonic() + seconds
        next_send = time.monotonic()
        answer = len(self._session.answers)
        self._session.answers.append((next_send, seconds, False))
        for i in range(first, len(chunks)):
            if self.stalled:
                return  # no generationComplete, no turnComplete: the known Gemini stall
            said = words[len(words) * i // len(chunks) : len(words) * (i + 1) // len(chunks)]
            # 3.x models combine fields: a chunk carries the words spoken in it.
            text = (" " if i > first else "") + " ".join(said) if said else None
            await _send(
                self._ws, server_content_message(audio=chunks[i], output_transcription=text)
            )
            if i == first:
                self._reached(Moment.GENERATING)
            next_send += interval
            await asyncio.sleep(max(0.0, next_send - time.monotonic()))
        await _send(self._ws, server_content_message(generation_complete=True))
        self._reached(Moment.ANSWER_PLAYING)
        usage = UsageMetadata(prompt_tokens=100, response_tokens=25, total_tokens=125)
        await _send(self._ws, server_content_message(turn_complete=True, usage=usage))
        self._session.answers_completed += 1
        start, seconds, _ = self._session.answers[answer]
        self._session.answers[answer] = (start, seconds, True)
        await _send(self._ws, resumption_update_message(self._issue_handle(), resumable=True))


class GeminiEmulator:
    """``await start()``, point the bridge at ``url``, inspect ``sessions``, ``await stop()``."""

    def __init__(self, options: EmulatorOptions | None = None) -> None:
        self.options = options or EmulatorOptions()
        self.sessions: list[EmulatedSession] = []
        self._server: Server | None = None
        self._open: set[ServerConnection] = set()
        self._handles: dict[str, ServerConnection] = {}  # resumption handle → issuing socket
        self._memories: dict[str, _Memory] = {}  # resumption handle → its conversation
        self._conversations: dict[ServerConnection, _Conversation] = {}
        self._fault_tasks: set[asyncio.Task[None]] = set()
        self.port = 0
        self.host = "127.0.0.1"

    @property
    def url(self) -> str:
        """The AI Studio endpoint on this emulator (v1beta, as Google's default)."""
        return f"ws://{self.host}:{self.port}" + AI_STUDIO_PATH

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
        for task in list(self._fault_tasks):
            task.cancel()
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
        index = len(self.sessions)
        session = EmulatedSession(path=ws.request.path, auth=auth or "none")
        session.quota_project = ws.request.headers.get("x-goog-user-project")
        self.sessions.append(session)
        self._open.add(ws)
        faults = self.options.faults_by_connection.get(index, self.options.faults) or FaultPlan()
        fault_task: asyncio.Task[None] | None = None
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
                await _close(
                    ws, 1007, "Invalid JSON payload received. The first message must be setup."
                )
                return
            problem = self._check_setup(first.setup, session) or self._check_resumption(
                first.setup, session
            )
            if problem is not None:
                await _close(ws, *problem)
                return
            session.setup = first.setup
            if faults.setup_delay:
                await asyncio.sleep(faults.setup_delay)
            if faults.refuse_setup:
                await _close(ws, 1011, "The service is currently unavailable.")
                return
            if faults.setup_error is not None:  # refused with a frame, not a close: then silence
                await _send(ws, json.dumps(faults.setup_error))
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(30):
                        await ws.wait_closed()
                return
            await _send(ws, setup_complete_message(secrets.token_hex(8)))
            if self.options.echo:
                await _Echo(ws, session).run()
                return
            handle = session.resumed_from
            memory = self._memories.get(handle or "") or _Memory(list(self.options.tool_script))
            conversation = _Conversation(
                ws, session, self.options, lambda: self._issue(ws, memory), memory
            )
            self._conversations[ws] = conversation
            fault_task = asyncio.create_task(self._inject(ws, conversation, faults))
            await conversation.run()
        except ConnectionClosed:
            pass
        finally:
            if fault_task is not None:
                fault_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await fault_task
            self._open.discard(ws)
            self._conversations.pop(ws, None)
            session.close_code = ws.close_code
            session.close_reason = ws.close_reason or ""

    def _issue(self, ws: ServerConnection, memory: _Memory) -> str:
        handle = f"emulated-handle-{len(self._handles) + 1}-{secrets.token_hex(6)}"
        self._handles[handle] = ws
        self._memories[handle] = memory
        return handle

    def _check_resumption(
        self, setup: dict[str, Any], session: EmulatedSession
    ) -> tuple[int, str] | None:
        handle = setup_field(setup, "sessionResumption", "handle")
        if not handle:
            return None
        session.resumed_from = handle
        owner = self._handles.get(handle)
        if owner is None:
            if self.options.reject_unknown_handles:
                return 1008, "Session resumption handle is invalid or has expired."
            return None
        if owner in self._open:
            # Google refuses to resume a session whose old socket is still open.
            return 1011, "Internal error encountered."
        return None

    async def _inject(
        self, ws: ServerConnection, conversation: _Conversation, plan: FaultPlan
    ) -> None:
        """Run one connection's scripted faults, in time order."""
        started = time.monotonic()
        if plan.go_away_on is not None:
            await self._go_away_at(conversation, plan.go_away_on)
        events: list[tuple[float, str]] = []
        if plan.go_away_at is not None or plan.go_away_on is not None:
            at = (time.monotonic() - started) + (plan.go_away_at or 0.0)
            events.append((at, "go_away"))
            events.append((at + plan.go_away_time_left, "deadline"))
        if plan.close_at is not None:
            events.append((plan.close_at, "close"))
        if plan.stall_at is not None:
            events.append((plan.stall_at, "stall"))
        for at, what in sorted(events):
            await asyncio.sleep(max(0.0, started + at - time.monotonic()))
            if what == "go_away":
                await _send(ws, go_away_message(plan.go_away_time_left))
            elif what == "deadline":
                await _close(ws, 1011, "Deadline expired before operation could complete.")
                return
            elif what == "close":
                reason = "Internal error encountered." if plan.close_code == 1011 else "fault"
                await _close(ws, plan.close_code, reason)
                return
            elif what == "stall":
                conversation.stalled = True

    @staticmethod
    async def _go_away_at(conversation: _Conversation, moment: Moment) -> None:
        """Until ``moment`` first comes on this connection."""
        if moment is Moment.IDLE:  # the answer has played out at the caller
            await conversation.moments[Moment.ANSWER_PLAYING].wait()
            await asyncio.sleep(max(0.0, conversation.playing_until - time.monotonic()))
            return
        await conversation.moments[moment].wait()

    async def inject_fault(self, kind: str, rng: random.Random) -> bool:
        """A fault on one open session picked at random: "go_away" (10 s left, then 1011),
        "close" (1011 now) or "stall" (silent from now on). False when none is open."""
        open_ones = [ws for ws in self._open if ws in self._conversations]
        if not open_ones:
            return False
        ws = rng.choice(open_ones)
        if kind == "go_away":
            await _send(ws, go_away_message(10.0))
            task = asyncio.create_task(self._deadline(ws, 10.0))
            self._fault_tasks.add(task)
            task.add_done_callback(self._fault_tasks.discard)
        elif kind == "close":
            await _close(ws, 1011, "Internal error encountered.")
        elif kind == "stall":
            self._conversations[ws].stalled = True
        return True

    async def _deadline(self, ws: ServerConnection, after: float) -> None:
        await asyncio.sleep(after)
        await _close(ws, 1011, "Deadline expired before operation could complete.")

    def expire_handles(self) -> None:
        """Forget every resumption handle issued so far (as after Google's 2 h validity)."""
        self._handles.clear()

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
            for field_path in NOT_ON_3X:
                if setup_field(setup, *field_path) is not None:
                    dotted = ".".join(field_path)
                    return 1007, f"Invalid JSON payload: {dotted} is not supported by {name}"
        modalities = setup_field(setup, "generationConfig", "responseModalities")
        if modalities != ["AUDIO"]:
            return 1007, "Request contains an invalid argument: responseModalities must be [AUDIO]."
        return None
