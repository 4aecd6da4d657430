"""Stateful streaming resamplers for the two live directions of a call.

Both are linear-phase polyphase FIR filters that keep their input history
between chunks, so a call's audio is filtered as one continuous signal: no
clicks at chunk boundaries, no reset on silence, and every chunk in gives its
whole share of samples out at once (a 20 ms frame in is 20 ms out). The only
delay is the filter's group delay, about 1.5 ms in each direction; block
resamplers such as ``soxr.ResampleStream`` hold back ~100 ms instead.

Offline conversion (the demo's WAV files, the emulator's bundled speech) uses
soxr, which is the better tool when latency does not matter.

The per-chunk work runs in ``_speedups.c`` when it was built (one C call per
chunk, where numpy makes ten small ones whose fixed cost dominates at this size;
docs/performance.md has the figures); the numpy code here is the reference,
tested against it, and the fallback.
"""

from __future__ import annotations

from enum import StrEnum

import numpy as np
from numpy.lib.stride_tricks import as_strided

try:  # the same filters in C, one call per chunk (setup.py builds it when it can)
    from . import _speedups
except ImportError:  # built without a C compiler: the numpy code below runs
    _speedups = None  # type: ignore[assignment]


class Implementation(StrEnum):
    C = "C"
    NUMPY = "numpy"  # the install had no C compiler


def implementation() -> Implementation:
    """Which code runs the filters."""
    return Implementation.C if _speedups is not None else Implementation.NUMPY


def lowpass_taps(num_taps: int, cutoff: float, beta: float) -> np.ndarray:
    """Kaiser-windowed sinc low-pass; ``cutoff`` is a fraction of the sample rate."""
    n = np.arange(num_taps) - (num_taps - 1) / 2
    taps = 2 * cutoff * np.sinc(2 * cutoff * n) * np.kaiser(num_taps, beta)
    normalised: np.ndarray = taps / taps.sum()
    return normalised


_INT16_MAX, _INT16_MIN = np.float32(32767), np.float32(-32768)


def _to_pcm16(samples: np.ndarray) -> bytes:
    """In place: ``samples`` is scratch. (minimum/maximum with numpy scalars: np.clip, or
    Python ints that numpy converts on every call, cost twice as much.)"""
    np.rint(samples, out=samples)
    np.minimum(samples, _INT16_MAX, out=samples)
    np.maximum(samples, _INT16_MIN, out=samples)
    return samples.astype("<i2").tobytes()


class _FilterInput:
    """The filter's input, history in front, in one reused buffer, with its windows.

    The per-frame path runs 50 times a second per call and numpy's fixed cost
    per call dominates at this size, so nothing is concatenated and the strided
    windows over the buffer are made once per chunk shape and reused: they see
    the new samples because they view the same memory.
    """

    MAX_VIEWS = 32  # chunk shapes seen (Twilio's is one; Gemini's vary a little)

    def __init__(self, width: int, step: int) -> None:
        self._width, self._step = width, step
        self._keep = width - 1
        self._buffer = np.zeros(self._keep + 1440, dtype=np.float32)
        self._views: dict[tuple[int, int], np.ndarray] = {}
        self._n = 0

    def load(self, pcm: bytes) -> None:
        n = len(pcm) // 2
        if self._keep + n > len(self._buffer):
            grown = np.zeros(self._keep + n, dtype=np.float32)
            grown[: self._keep] = self._buffer[: self._keep]
            self._buffer, self._views = grown, {}
        self._buffer[self._keep : self._keep + n] = np.frombuffer(pcm, dtype="<i2", count=n)
        self._n = n

    @property
    def window_count(self) -> int:
        return self._n

    def windows(self, first: int = 0) -> np.ndarray:
        """Rows: every ``step``-th window of ``width`` samples from window ``first``."""
        key = (self._n, first)
        view = self._views.get(key)
        if view is None:
            rows = (self._n - first - 1) // self._step + 1
            stride = self._buffer.strides[0]
            view = as_strided(
                self._buffer[first:],
                shape=(rows, self._width),
                strides=(stride * self._step, stride),
                writeable=False,
            )
            if len(self._views) < self.MAX_VIEWS:
                self._views[key] = view
        return view

    def keep_tail(self) -> None:
        end = self._keep + self._n
        self._buffer[: self._keep] = self._buffer[end - self._keep : end]


class _CFilter:
    """What the C filters read and update: the taps and the float32 history, as plain
    bytes and bytearray (exporting a numpy array's buffer costs more than the filter)."""

    __slots__ = ("history", "taps")

    def __init__(self, taps: bytes, width: int) -> None:
        self.taps = taps  # one copy for every call: it stays in cache between their frames
        self.history = bytearray(4 * (width - 1))


def _shared(taps: np.ndarray) -> np.ndarray:
    """Float32, read-only: one set of taps per process, used by every call's filter."""
    taps = np.ascontiguousarray(taps, dtype=np.float32)
    taps.setflags(write=False)
    return taps


class Upsampler2x:
    """8 kHz → 16 kHz: a 47-tap half-band interpolator (group delay 1.44 ms).

    Flat to 3.4 kHz; the images of the phone band are 45 dB down at 4.6 kHz and
    65 dB or more above 5 kHz, so Gemini hears the caller's band only.
    """

    NUM_TAPS = 47
    delay_samples = (NUM_TAPS - 1) // 2  # at the output rate

    # Even length for two equal phases; ×2 restores the level. The polyphase branches,
    # reversed so a window's dot product is a convolution, as the two columns of one
    # matrix: one product gives both phases, already interleaved.
    _TAPS = np.append(lowpass_taps(NUM_TAPS, 0.25, 6.0), 0.0) * 2
    _PHASES = _shared(np.stack((_TAPS[0::2][::-1], _TAPS[1::2][::-1]), axis=1))
    _C_TAPS = _PHASES.tobytes()

    def __init__(self) -> None:
        self._phases = self._PHASES
        # One implementation per resampler, chosen here; only its state is built.
        self._c = _CFilter(self._C_TAPS, len(self._PHASES)) if _speedups is not None else None
        self._input = _FilterInput(len(self._PHASES), 1) if self._c is None else None

    def process(self, pcm8k: bytes) -> bytes:
        """Resample one chunk of PCM16 LE; returns exactly twice as many samples."""
        if not pcm8k:
            return b""
        if self._c is not None:
            return _speedups.upsample2(pcm8k, self._c.history, self._c.taps)
        assert self._input is not None
        self._input.load(pcm8k)
        out = np.dot(self._input.windows(), self._phases).reshape(-1)
        self._input.keep_tail()
        return _to_pcm16(out)


class Downsampler3x:
    """24 kHz → 8 kHz: a 73-tap low-pass decimator (group delay 1.5 ms).

    Passes the phone band flat to 3.4 kHz; what would alias into it is 50 dB
    down at 4.6 kHz and 65 dB or more above 5 kHz. Chunks of any length are accepted; the
    decimation phase carries over, so output follows input sample for sample.
    """

    NUM_TAPS = 73
    delay_samples = (NUM_TAPS - 1) // 2  # at the input rate
    _REVERSED_TAPS = _shared(lowpass_taps(NUM_TAPS, 4000 / 24000, 6.0)[::-1])
    _C_TAPS = _REVERSED_TAPS.tobytes()

    def __init__(self) -> None:
        self._taps = self._REVERSED_TAPS
        self._c = _CFilter(self._C_TAPS, self.NUM_TAPS) if _speedups is not None else None
        self._input = _FilterInput(self.NUM_TAPS, 3) if self._c is None else None
        self._phase = 0  # input samples to skip before the next output sample

    def process(self, pcm24k: bytes) -> bytes:
        """Resample PCM16 LE (even byte length); returns one sample per three in."""
        if not pcm24k:
            return b""
        if self._c is not None:
            out, self._phase = _speedups.downsample3(
                pcm24k, self._c.history, self._c.taps, self._phase
            )
            return out
        assert self._input is not None
        self._input.load(pcm24k)
        n_windows = self._input.window_count
        phase = self._phase
        self._phase = (phase - n_windows) % 3
        if phase >= n_windows:
            self._input.keep_tail()
            return b""
        out = np.dot(self._input.windows(phase), self._taps)
        self._input.keep_tail()
        return _to_pcm16(out)
