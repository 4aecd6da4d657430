"""Audio conversion between Twilio (8 kHz μ-law) and Gemini Live (16 kHz in, 24 kHz out),
without I/O: μ-law, the resamplers (numpy, and their C twin) and the per-direction
streams. May import: nothing of the bridge."""

from .mulaw import ULAW_SILENCE, pcm16_to_ulaw, ulaw_to_pcm16
from .resample import Downsampler3x, Upsampler2x
from .streams import TWILIO_FRAME_BYTES, CallerAudioStream, ModelAudioStream

__all__ = [
    "TWILIO_FRAME_BYTES",
    "ULAW_SILENCE",
    "CallerAudioStream",
    "Downsampler3x",
    "ModelAudioStream",
    "Upsampler2x",
    "pcm16_to_ulaw",
    "ulaw_to_pcm16",
]
