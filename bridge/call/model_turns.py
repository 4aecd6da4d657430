"""What the model is saying, and what the caller has heard of it, without I/O.

For each piece of Gemini's answer it says what goes to Twilio: the audio as whole 20 ms
μ-law frames, one ``mark`` after a turn's last frame (so the bridge knows when the
answer has been heard), and ``clear`` when the caller talks over it. It drops the rest
of an interrupted turn, keeps the times operators want (first audio, each answer's
latency from the caller's last voiced frame), and answers the question ending a call
depends on: has a turn that began after a moment been said *and* played?

A turn opens with its first audio and closes with ``turnComplete``; a barge-in drops
what is left of it; a new connection cuts it (the link has the next one finish it).
The clock is injected, so all of it is tested without sockets.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ..audio import TWILIO_FRAME_BYTES, ModelAudioStream
from .playback import PlaybackTracker
from .turn_state import TurnState

QUIET_MODEL_S = 3.0  # no new model turn this long after asking: go by what was queued
FRAME_SAMPLES_24K = TWILIO_FRAME_BYTES * 3  # a 20 ms frame's samples at Gemini's 24 kHz


class ModelTurns:
    def __init__(self, questions: TurnState, clock: Callable[[], float] = time.monotonic):
        self.questions = questions
        self.playback = PlaybackTracker(clock)
        self._audio = ModelAudioStream()
        self._clock = clock
        self.open = False  # audio of a model turn came and its turnComplete did not
        self.dropping = False  # the caller interrupted this turn: its audio is dropped
        self._opened_at: float | None = None  # the open turn's first audio
        self._spoken_opened_at: float | None = None  # ... the last completed turn's
        self.started_at = clock()  # the call's start, for its first audio
        self.first_audio_s: float | None = None
        self.answer_latency_s: float | None = None  # set when an answer's audio began

    # --- Gemini's message, piece by piece, in the order they must be applied ----------------

    def interrupted(self) -> int | None:
        """``interrupted``: the rest of the turn is dropped. Returns how many frames Twilio
        still had queued when it must be told to ``clear`` (None: nothing is playing)."""
        self.questions.on_model_interrupted()
        self._audio.discard()
        self.dropping = self.open
        if not self.playback.is_playing:
            return None
        queued = round(self.playback.queued_ms / 20)
        self.playback.on_clear()
        return queued

    @staticmethod
    def frames_in(chunks: tuple[bytes, ...]) -> float:
        """How many 20 ms frames Gemini's 24 kHz chunks hold (what a dropped turn loses)."""
        return sum(len(chunk) for chunk in chunks) / 2 / FRAME_SAMPLES_24K

    def audio(self, chunks: tuple[bytes, ...]) -> bytes:
        """Answer audio (not while ``dropping``): its whole μ-law frames to send now."""
        self.answer_latency_s = None
        if not self.open:
            questions = self.questions
            if questions.awaiting_answer:  # a new answer: timed from the last voiced frame
                self.answer_latency_s = self._clock() - questions.last_voiced_at
            self._opened_at = self._clock()
            self.open = True
        self.questions.on_model_audio()
        to_twilio = self._audio.to_twilio_audio
        # Gemini's messages carry one chunk: then no list and no join (a comprehension is
        # a call of its own, fifty times a second).
        return to_twilio(chunks[0]) if len(chunks) == 1 else b"".join(map(to_twilio, chunks))

    def generated(self) -> bytes:
        """``generationComplete`` or ``turnComplete``: the turn's last, partial frame,
        padded with silence (nothing while ``dropping``)."""
        if self.dropping:
            return b""
        return b"".join(self._audio.flush())

    def turn_complete(self) -> None:
        if self._opened_at is not None:
            self._spoken_opened_at = self._opened_at
        self._opened_at = None
        self.open = False
        self.dropping = False
        self.questions.on_model_turn_complete()

    def cut(self) -> None:
        """A new connection replaced the one speaking: whatever turn it spoke is over."""
        self._audio.discard()
        self.open = False
        self.dropping = False

    # --- Twilio's side -------------------------------------------------------------------------

    def sent(self, frames: int, *, end_of_turn: bool = False) -> str | None:
        """``frames`` went to Twilio; the name of a mark to send after them, when due."""
        if frames and self.first_audio_s is None:
            self.first_audio_s = self._clock() - self.started_at
        return self.playback.on_sent(frames, end_of_turn=end_of_turn)

    def marked(self, name: str) -> None:
        """Twilio echoed a mark: what was queued before it has played."""
        self.playback.on_mark(name)

    # --- ending a call once its last words were heard ----------------------------------------

    def spoken_since(self, asked: float) -> bool:
        """A model turn that began after ``asked`` is complete and Twilio has played it.
        If the model says nothing new for a while, what was queued must still play out."""
        started = self._spoken_opened_at
        spoke = started is not None and started >= asked
        silent = not self.open and self._clock() - asked > QUIET_MODEL_S
        return (spoke or silent) and not self.playback.is_playing

    def recheck_in(self, asked: float) -> float:
        """When ``spoken_since`` may turn true without an event (the clock's own part): the
        quiet period ending, or Twilio's buffer running dry by the clock."""
        waits = [max(0.0, asked + QUIET_MODEL_S - self._clock())]
        if (dry := self.playback.runs_dry_in()) is not None:
            waits.append(dry)
        return min(waits) + 0.02
