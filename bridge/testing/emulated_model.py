"""The emulated model behind each connection: it hears the caller with an energy VAD,
answers each turn with bundled speech faster than real time, is interrupted, calls tools
it is scripted to call, and (in echo mode, for the benchmark) sends every chunk back."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np
from websockets.asyncio.server import ServerConnection

from ..audio import ulaw_to_pcm16
from ..gemini.server import (
    parse_client_message,
    resumption_update_message,
    server_content_message,
    setup_field,
    tool_call_cancellation_message,
    tool_call_message,
)
from ..gemini.wire import FunctionResponse, GeminiProtocolError, UsageMetadata
from .emulator_options import (
    BLOCK_MS,
    INPUT_RATE,
    OUTPUT_RATE,
    EmulatedSession,
    EmulatorOptions,
    Moment,
    ScriptedToolCall,
    bundled_reply,
)

log = logging.getLogger(__name__)


def send_json(ws: ServerConnection, message: str) -> Awaitable[None]:
    """Gemini sends its JSON in binary frames, not text ones: so does the emulator."""
    return ws.send(message.encode())


async def close_as_google(ws: ServerConnection, code: int, reason: str) -> None:
    """Close as Google does; a close reason may carry at most 123 bytes."""
    await ws.close(code, reason.encode()[:123].decode(errors="ignore"))


class EnergyVad:
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


class Echo:
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
                await send_json(ws, server_content_message(audio=audio))
                session.echo_out.append(time.monotonic())
            elif message.text is not None:
                session.keypad += "".join(digits.findall(message.text))


@dataclass
class Memory:
    """What a conversation remembers across connections: a session resumed from a handle
    is the same conversation (here: which scripted tool calls it has made)."""

    script: list[ScriptedToolCall]
    number: int = 0  # which conversation of the emulator's this is, from 1
    caller_turns: int = 0  # the caller's turns heard, on every connection of it


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


class Conversation:
    """One connection's behaviour after setup: hear turns, answer, get interrupted."""

    def __init__(
        self,
        ws: ServerConnection,
        session: EmulatedSession,
        options: EmulatorOptions,
        issue_handle: Callable[[], str],
        memory: Memory,
    ):
        self._ws = ws
        self._session = session
        self._options = options
        self._issue_handle = issue_handle
        # Like Gemini, end the caller's turn after the silence the setup asked for.
        silence = setup_field(
            session.setup, "realtimeInputConfig", "automaticActivityDetection", "silenceDurationMs"
        )
        self._vad = EnergyVad(options, int(silence) if isinstance(silence, int | float) else None)
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
        await send_json(self._ws, resumption_update_message(self._issue_handle(), resumable=True))
        try:
            async for raw in self._ws:
                try:
                    message = parse_client_message(raw)
                except GeminiProtocolError as exc:
                    await close_as_google(self._ws, 1007, f"Invalid JSON payload received. {exc}")
                    return
                self._session.messages.append(message)
                if message.setup is not None:
                    await close_as_google(self._ws, 1007, "setup may only be sent once")
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
            await send_json(self._ws, tool_call_message(entry.calls))
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
            await send_json(self._ws, tool_call_cancellation_message(ids))

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
        await send_json(
            self._ws, server_content_message(interrupted=True, turn_complete=generating)
        )

    async def _caller_finished(self) -> None:
        self._session.caller_turns += 1
        self._memory.caller_turns += 1
        seconds = self._vad.speech_blocks * BLOCK_MS / 1000
        await send_json(
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
        await send_json(self._ws, resumption_update_message(None, resumable=False))
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
            await send_json(
                self._ws, server_content_message(audio=chunks[i], output_transcription=text)
            )
            if i == first:
                self._reached(Moment.GENERATING)
            next_send += interval
            await asyncio.sleep(max(0.0, next_send - time.monotonic()))
        await send_json(self._ws, server_content_message(generation_complete=True))
        self._reached(Moment.ANSWER_PLAYING)
        usage = UsageMetadata(prompt_tokens=100, response_tokens=25, total_tokens=125)
        await send_json(self._ws, server_content_message(turn_complete=True, usage=usage))
        self._session.answers_completed += 1
        start, seconds, _ = self._session.answers[answer]
        self._session.answers[answer] = (start, seconds, True)
        await send_json(self._ws, resumption_update_message(self._issue_handle(), resumable=True))
