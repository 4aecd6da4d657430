"""Whose turn it is, as the bridge sees it: the caller's voice and the model's answers.

The bridge needs this to pick a quiet moment for a planned reconnect, to know
which caller turn is still unanswered (so it can be sent again on a new
connection), and to notice when Gemini stalls after the caller finished. A
plain energy detector on the caller's 8 kHz audio is enough for that: it
never decides turns for Gemini, whose own VAD does.
"""

from __future__ import annotations

import time
import warnings
from collections import deque
from collections.abc import Callable

from .audio import CallerAudioStream

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

VOICED_RMS = 400  # int16 RMS of 20 ms of caller audio; phone speech is well above, line noise below
END_OF_TURN_S = 0.7  # quiet after speech that ends the caller's turn
PRE_ROLL_FRAMES = 15  # 300 ms kept before speech starts, so a replay has the onset
MAX_TURN_FRAMES = 30 * 50  # a replayed turn keeps its last 30 s (240 kB of μ-law)


class TurnState:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.caller_speaking = False
        self.caller_turn_pending = False  # the caller finished and no answer has started since
        self.model_generating = False
        self.turn_ended_at: float | None = None
        self._last_voiced = 0.0
        self._pre_roll: deque[bytes] = deque(maxlen=PRE_ROLL_FRAMES)
        self._turn_audio: deque[bytes] = deque(maxlen=MAX_TURN_FRAMES)

    def on_caller_frame(self, ulaw: bytes, pcm16k: bytes) -> None:
        """One caller frame, as Twilio sent it and as Gemini gets it.

        The turn is kept as μ-law (a quarter of the 16 kHz PCM's size) and only
        converted again if it has to be replayed.
        """
        now = self._clock()
        voiced = audioop.rms(pcm16k, 2) > VOICED_RMS
        if voiced:
            self._last_voiced = now
            if not self.caller_speaking:
                self.caller_speaking = True
                if not self.caller_turn_pending:  # a new turn, not the rest of the last one
                    self._turn_audio.clear()
                    self._turn_audio.extend(self._pre_roll)
        if self.caller_speaking or self.caller_turn_pending:
            self._turn_audio.append(ulaw)
        else:
            self._pre_roll.append(ulaw)
        if self.caller_speaking and not voiced and now - self._last_voiced >= END_OF_TURN_S:
            self.caller_speaking = False
            self.caller_turn_pending = True
            self.turn_ended_at = self._last_voiced

    def on_model_audio(self) -> None:
        self.model_generating = True
        if self.caller_turn_pending or self.caller_speaking:
            # The model is answering: that turn reached Gemini and needs no replay.
            self.caller_turn_pending = False
            self.turn_ended_at = None
            if not self.caller_speaking:
                self._turn_audio.clear()

    def on_model_turn_end(self) -> None:
        self.model_generating = False

    @property
    def in_turn(self) -> bool:
        """The caller is speaking, or finished and is waiting for an answer."""
        return self.caller_speaking or self.caller_turn_pending

    @property
    def is_quiet(self) -> bool:
        """Nobody speaking, nothing unanswered: a reconnect now loses nothing."""
        return not (self.caller_speaking or self.caller_turn_pending or self.model_generating)

    def unanswered_audio(self) -> list[bytes]:
        """16 kHz audio of the caller's turn in flight (empty when there is none)."""
        if not self.in_turn:
            return []
        converter = CallerAudioStream()
        return [converter.to_gemini_pcm(frame) for frame in self._turn_audio]

    @property
    def last_voiced_at(self) -> float:
        """When the caller's most recent voiced frame arrived."""
        return self._last_voiced

    def restart_wait(self) -> None:
        """The unanswered turn was just sent again: the wait for its answer starts now."""
        if self.caller_turn_pending:
            self.turn_ended_at = self._clock()

    def waiting_since(self) -> float | None:
        """When the caller finished a turn that has no answer yet."""
        return self.turn_ended_at if self.caller_turn_pending else None
