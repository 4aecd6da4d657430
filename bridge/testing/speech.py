"""Speech as a phone line carries it: bundled or given WAVs to 8 kHz μ-law, the loudness
of a 20 ms frame, and both sides of a call written back out as a stereo recording."""

from __future__ import annotations

import wave
from importlib import resources
from pathlib import Path

import numpy as np
import soxr

from ..audio import ULAW_SILENCE, pcm16_to_ulaw, ulaw_to_pcm16

VOICED_RMS = 300.0  # int16 RMS above which a 20 ms frame counts as speech


def load_speech(name_or_path: str | Path) -> bytes:
    """A WAV (bundled sample name or a path) as 8 kHz μ-law, the way Twilio carries it."""
    path = Path(name_or_path)
    if not path.is_file():
        path = Path(str(resources.files("bridge.testing").joinpath(f"data/{name_or_path}")))
    with wave.open(str(path), "rb") as wav:
        if wav.getsampwidth() != 2:
            raise ValueError(f"{path}: need 16-bit PCM")
        rate, channels = wav.getframerate(), wav.getnchannels()
        samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    if channels > 1:
        samples = samples.reshape(-1, channels).mean(axis=1).astype("<i2")
    if rate != 8000:
        samples = soxr.resample(samples, rate, 8000, quality="VHQ")
    pcm = np.clip(samples, -32768, 32767).astype("<i2").tobytes()
    return pcm16_to_ulaw(pcm)


def frame_rms(ulaw: bytes) -> float:
    pcm = np.frombuffer(ulaw_to_pcm16(ulaw), dtype="<i2").astype(np.float32)
    return float(np.sqrt(np.mean(pcm * pcm))) if len(pcm) else 0.0


def write_call_recording(path: str | Path, caller: bytes, assistant: bytes) -> None:
    """Both sides as a call recording has them: 8 kHz stereo WAV, the caller on the left,
    the assistant (what the caller heard) on the right, sample for sample in time."""
    length = max(len(caller), len(assistant))
    left = np.frombuffer(ulaw_to_pcm16(caller.ljust(length, bytes([ULAW_SILENCE]))), "<i2")
    right = np.frombuffer(ulaw_to_pcm16(assistant.ljust(length, bytes([ULAW_SILENCE]))), "<i2")
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(np.column_stack((left, right)).astype("<i2").tobytes())
