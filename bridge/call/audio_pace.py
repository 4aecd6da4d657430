"""Caller audio against the wall clock: a stream may not push audio far faster than
real time.

Every second of audio a stream sends is a second Gemini hears, billed to the
operator's quota. Twilio sends 20 ms of audio every 20 ms; after a network hiccup the
frames it held arrive in a burst, but in all they never run ahead of the time since the
stream started by more than that start was late. So a stream is allowed the audio of
the time since its ``start`` plus a fixed allowance, and no more; how the allowance was
chosen is in docs/security.md.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ..audio import TWILIO_FRAME_BYTES

ULAW_BYTES_PER_S = TWILIO_FRAME_BYTES * 50  # 8 kHz μ-law: one byte a sample


class AudioPace:
    """Counts a stream's audio bytes against ``allowance_s`` plus the time since
    ``restart()`` (or since it was made).

    ``take`` costs a subtraction and a compare; the clock is read only when the
    headroom granted at the last reading is spent, about once per ``allowance_s`` of
    real-time audio, because Twilio sends 50 frames a second per call.
    """

    def __init__(
        self,
        allowance_s: float,
        bytes_per_s: int = ULAW_BYTES_PER_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._allowance = allowance_s * bytes_per_s
        self._rate = bytes_per_s
        self._clock = clock
        self.restart()

    def restart(self) -> None:
        """The stream starts now: nothing received, the allowance ahead of it."""
        self._origin = self._clock()
        self._granted = self._allowance  # bytes allowed as of the last clock reading
        self._headroom = self._allowance  # of which not yet received

    def take(self, audio_bytes: int) -> bool:
        """Count ``audio_bytes`` more; False once the audio runs more than the
        allowance ahead of the wall clock."""
        self._headroom -= audio_bytes
        if self._headroom >= 0:
            return True
        received = self._granted - self._headroom
        self._granted = (self._clock() - self._origin) * self._rate + self._allowance
        self._headroom = self._granted - received
        return self._headroom >= 0

    @property
    def ahead_s(self) -> float:
        """How far the audio received runs ahead of the time since the start, in
        seconds, against the clock's last reading: exact right after ``take`` said no."""
        return (self._allowance - self._headroom) / self._rate
