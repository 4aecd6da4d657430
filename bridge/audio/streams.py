"""Per-call, per-direction audio conversion: one object each way, alive for the whole call."""

from __future__ import annotations

from .mulaw import ULAW_SILENCE, pcm16_to_ulaw, ulaw_to_pcm16
from .resample import Downsampler3x, Upsampler2x

TWILIO_FRAME_BYTES = 160  # 20 ms of 8 kHz μ-law


class CallerAudioStream:
    """Twilio's 8 kHz μ-law → Gemini's 16 kHz PCM16, frame by frame, no buffering."""

    def __init__(self) -> None:
        self._upsampler = Upsampler2x()

    def to_gemini_pcm(self, ulaw: bytes) -> bytes:
        return self._upsampler.process(ulaw_to_pcm16(ulaw))


class ModelAudioStream:
    """Gemini's 24 kHz PCM16 → exact 20 ms μ-law frames for Twilio.

    Gemini's chunks are of any length, odd byte counts included: the half
    sample and the partial frame wait for the next chunk, or for ``flush`` at
    the end of the model's turn.
    """

    def __init__(self) -> None:
        self._downsampler = Downsampler3x()
        self._odd_byte = b""
        self._partial = bytearray()

    def to_twilio_frames(self, pcm24k: bytes) -> list[bytes]:
        if self._odd_byte:
            pcm24k = self._odd_byte + pcm24k
            self._odd_byte = b""
        if len(pcm24k) % 2:
            pcm24k, self._odd_byte = pcm24k[:-1], pcm24k[-1:]
        ulaw = pcm16_to_ulaw(self._downsampler.process(pcm24k))
        if not self._partial:  # usually: frame the chunk as it is, no copy into the buffer
            whole = len(ulaw) - len(ulaw) % TWILIO_FRAME_BYTES
            if whole < len(ulaw):
                self._partial += ulaw[whole:]
            return [ulaw[i : i + TWILIO_FRAME_BYTES] for i in range(0, whole, TWILIO_FRAME_BYTES)]
        self._partial += ulaw
        whole = len(self._partial) - len(self._partial) % TWILIO_FRAME_BYTES
        frames = [
            bytes(self._partial[i : i + TWILIO_FRAME_BYTES])
            for i in range(0, whole, TWILIO_FRAME_BYTES)
        ]
        del self._partial[:whole]
        return frames

    def flush(self) -> list[bytes]:
        """End of the model's turn: the last partial frame, padded with silence."""
        self._odd_byte = b""
        if not self._partial:
            return []
        pad = TWILIO_FRAME_BYTES - len(self._partial)
        frame = bytes(self._partial) + bytes([ULAW_SILENCE]) * pad
        self._partial.clear()
        return [frame]

    def discard(self) -> None:
        """The caller interrupted: what is not yet framed is never played."""
        self._odd_byte = b""
        self._partial.clear()

    @property
    def pending_bytes(self) -> int:
        return len(self._partial)
