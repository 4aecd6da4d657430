"""Stateful streaming resamplers for the two live directions of a call.

Both are linear-phase polyphase FIR filters that keep their input history
between chunks, so a call's audio is filtered as one continuous signal: no
clicks at chunk boundaries, no reset on silence, and every chunk in gives its
whole share of samples out at once (a 20 ms frame in is 20 ms out). The only
delay is the filter's group delay, about 1.5 ms in each direction; block
resamplers such as ``soxr.ResampleStream`` hold back ~100 ms instead.

Offline conversion (the demo's WAV files, the emulator's bundled speech) uses
soxr, which is the better tool when latency does not matter.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def lowpass_taps(num_taps: int, cutoff: float, beta: float) -> np.ndarray:
    """Kaiser-windowed sinc low-pass; ``cutoff`` is a fraction of the sample rate."""
    n = np.arange(num_taps) - (num_taps - 1) / 2
    taps = 2 * cutoff * np.sinc(2 * cutoff * n) * np.kaiser(num_taps, beta)
    return taps / taps.sum()


def _to_float(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<i2").astype(np.float32)


def _to_pcm16(samples: np.ndarray) -> bytes:
    return np.clip(np.rint(samples), -32768, 32767).astype("<i2").tobytes()


class Upsampler2x:
    """8 kHz → 16 kHz: a 47-tap half-band interpolator (group delay 1.44 ms).

    Flat to 3.4 kHz; the images of the phone band are 45 dB down at 4.6 kHz and
    65 dB or more above 5 kHz, so Gemini hears the caller's band only.
    """

    NUM_TAPS = 47
    delay_samples = (NUM_TAPS - 1) // 2  # at the output rate

    def __init__(self) -> None:
        taps = lowpass_taps(self.NUM_TAPS, 0.25, 6.0)
        taps = np.append(taps, 0.0) * 2  # even length for two equal phases; ×2 restores level
        # Polyphase branches, reversed so a sliding window's dot product is a convolution.
        self._even = taps[0::2][::-1].astype(np.float32).copy()
        self._odd = taps[1::2][::-1].astype(np.float32).copy()
        self._history = np.zeros(len(self._even) - 1, dtype=np.float32)

    def process(self, pcm8k: bytes) -> bytes:
        """Resample one chunk of PCM16 LE; returns exactly twice as many samples."""
        if not pcm8k:
            return b""
        x = np.concatenate((self._history, _to_float(pcm8k)))
        windows = sliding_window_view(x, len(self._even))
        out = np.empty(2 * len(windows), dtype=np.float32)
        out[0::2] = windows @ self._even
        out[1::2] = windows @ self._odd
        self._history = x[len(x) - len(self._history) :].copy()
        return _to_pcm16(out)


class Downsampler3x:
    """24 kHz → 8 kHz: a 73-tap low-pass decimator (group delay 1.5 ms).

    Passes the phone band flat to 3.4 kHz; what would alias into it is 50 dB
    down at 4.6 kHz and 65 dB or more above 5 kHz. Chunks of any length are accepted; the
    decimation phase carries over, so output follows input sample for sample.
    """

    NUM_TAPS = 73
    delay_samples = (NUM_TAPS - 1) // 2  # at the input rate

    def __init__(self) -> None:
        taps = lowpass_taps(self.NUM_TAPS, 4000 / 24000, 6.0)
        self._taps = taps[::-1].astype(np.float32).copy()
        self._history = np.zeros(self.NUM_TAPS - 1, dtype=np.float32)
        self._phase = 0  # input samples to skip before the next output sample

    def process(self, pcm24k: bytes) -> bytes:
        """Resample PCM16 LE (even byte length); returns one sample per three in."""
        if not pcm24k:
            return b""
        x = np.concatenate((self._history, _to_float(pcm24k)))
        windows = sliding_window_view(x, self.NUM_TAPS)
        picked = windows[self._phase :: 3]
        n_new = len(windows)
        self._phase = (self._phase - n_new) % 3
        self._history = x[len(x) - len(self._history) :].copy()
        if not len(picked):
            return b""
        return _to_pcm16(picked @ self._taps)
