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
    """Gemini's 24 kHz PCM16 → whole 20 ms μ-law frames for Twilio.

    Gemini's chunks are of any length, odd byte counts included: the half
    sample and the partial frame wait for the next chunk, or for ``flush`` at
    the end of the model's turn.
    """

    def __init__(self) -> None:
        self._downsampler = Downsampler3x()
        self._odd_byte = b""
        self._partial = bytearray()

    def to_twilio_audio(self, pcm24k: bytes) -> bytes:
        """The chunk's whole 20 ms frames, as one piece: Twilio plays media of any size,
        in order, so a chunk needs one message, not one per frame."""
        if self._odd_byte:
            pcm24k = self._odd_byte + pcm24k
            self._odd_byte = b""
        if len(pcm24k) % 2:
            pcm24k, self._odd_byte = pcm24k[:-1], pcm24k[-1:]
        ulaw = pcm16_to_ulaw(self._downsampler.process(pcm24k))
        if not self._partial:  # usually: the chunk as it is, no copy into the buffer
            whole = len(ulaw) - len(ulaw) % TWILIO_FRAME_BYTES
            if whole == len(ulaw):
                return ulaw
            self._partial += ulaw[whole:]
            return ulaw[:whole]
        self._partial += ulaw
        whole = len(self._partial) - len(self._partial) % TWILIO_FRAME_BYTES
        audio = bytes(self._partial[:whole])
        del self._partial[:whole]
        return audio

    def to_twilio_frames(self, pcm24k: bytes) -> list[bytes]:
        """The same, cut into 160-byte frames."""
        audio = self.to_twilio_audio(pcm24k)
        return [audio[i : i + TWILIO_FRAME_BYTES] for i in range(0, len(audio), TWILIO_FRAME_BYTES)]

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
