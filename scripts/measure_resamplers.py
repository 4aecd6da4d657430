"""Delay and fidelity of the live resamplers against soxr's streaming ones, in one run.

    .venv/bin/python scripts/measure_resamplers.py

For each direction (8→16 kHz caller audio, 24→8 kHz model audio) it feeds
20 ms frames and reports: samples out for each of the first frames, the
delay from a frame entering to its content leaving (buffering + filter), the
suppression of images (×2) or aliases (÷3), and µs per 20 ms frame.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import soxr

from bridge.audio import Downsampler3x, Upsampler2x

Resampler = Callable[[np.ndarray], np.ndarray]


def ours(kind: type[Upsampler2x] | type[Downsampler3x]) -> Resampler:
    r = kind()
    return lambda x: np.frombuffer(r.process(x.astype("<i2").tobytes()), dtype="<i2").astype(
        np.float64
    )


def soxr_stream(rate_in: int, rate_out: int, quality: str) -> Resampler:
    r = soxr.ResampleStream(rate_in, rate_out, 1, dtype="int16", quality=quality)
    return lambda x: r.resample_chunk(x.astype(np.int16)).astype(np.float64)


def tone(freq: float, rate: int, seconds: float) -> np.ndarray:
    return 8000 * np.sin(2 * np.pi * freq * np.arange(int(rate * seconds)) / rate)


def run_frames(
    make: Callable[[], Resampler], x: np.ndarray, frame: int
) -> tuple[list[int], np.ndarray]:
    resample = make()
    outs = [resample(x[i : i + frame]) for i in range(0, len(x), frame)]
    return [len(o) for o in outs], np.concatenate(outs)


def delay_ms(make: Callable[[], Resampler], rate_in: int, rate_out: int, frame: int) -> float:
    """Worst case over impulses in frames 10-17: how long until the listener could hear it."""
    return max(_impulse_delay_ms(make, rate_in, rate_out, frame, k) for k in range(10, 18))


def _impulse_delay_ms(
    make: Callable[[], Resampler], rate_in: int, rate_out: int, frame: int, k: int
) -> float:
    """Held-back time (the frame in which the impulse's output is released, minus
    the frame it went in with) plus the filter's own delay within the stream.
    """
    x = np.zeros(rate_in // 2)
    x[frame * k] = 20000
    resample = make()
    outs = [resample(x[i : i + frame]) for i in range(0, len(x), frame)]
    out = np.concatenate(outs)
    peak = int(np.argmax(np.abs(out)))
    ends = np.cumsum([len(o) for o in outs])
    released_in = int(np.searchsorted(ends, peak, side="right"))
    held_ms = (released_in - k) * frame / rate_in * 1000
    filter_ms = peak / rate_out * 1000 - frame * k / rate_in * 1000
    return held_ms + max(0.0, filter_ms)


def rejection_db(make: Callable[[], Resampler], rate_in: int, freq_in: float, frame: int) -> float:
    """How far a tone that must not pass (image or alias) ends up below the input."""
    x = tone(freq_in, rate_in, 1.0)
    _, out = run_frames(make, x, frame)
    out = out[len(out) // 4 :]
    return float(20 * np.log10(np.sqrt(np.mean(out**2)) / np.sqrt(np.mean(x**2)) + 1e-12))


def image_db(make: Callable[[], Resampler]) -> float:
    """×2: a 3 kHz caller tone's image at 5 kHz, relative to the tone."""
    _, out = run_frames(make, tone(3000, 8000, 1.0), 160)
    out = out[4000:]
    spectrum = np.abs(np.fft.rfft(out * np.hanning(len(out))))
    bin_hz = 16000 / len(out)
    return float(20 * np.log10(spectrum[int(5000 / bin_hz)] / spectrum[int(3000 / bin_hz)]))


def cost_us(make: Callable[[], Resampler], rate_in: int, frame: int) -> float:
    resample = make()
    x = tone(440, rate_in, 2.0)
    frames = [x[i : i + frame] for i in range(0, len(x) - frame, frame)]
    start = time.perf_counter()
    for f in frames:
        resample(f)
    return (time.perf_counter() - start) / len(frames) * 1e6


def main() -> None:
    print("caller audio, 8 → 16 kHz, 20 ms frames (160 samples in, 320 expected out)")
    for name, make in (
        ("bridge Upsampler2x", lambda: ours(Upsampler2x)),
        ("soxr HQ (default)", lambda: soxr_stream(8000, 16000, "HQ")),
        ("soxr QQ", lambda: soxr_stream(8000, 16000, "QQ")),
    ):
        sizes, _ = run_frames(make, tone(440, 8000, 0.2), 160)
        delay = delay_ms(make, 8000, 16000, 160)
        print(
            f"  {name:20} first frames out {sizes[:7]}  worst delay {delay:6.1f} ms"
            f"  image at 5 kHz {image_db(make):6.1f} dB  {cost_us(make, 8000, 160):6.1f} µs/frame"
        )
    print("model audio, 24 → 8 kHz, 20 ms chunks (480 samples in, 160 expected out)")
    for name, make in (
        ("bridge Downsampler3x", lambda: ours(Downsampler3x)),
        ("soxr HQ (default)", lambda: soxr_stream(24000, 8000, "HQ")),
        ("soxr QQ", lambda: soxr_stream(24000, 8000, "QQ")),
    ):
        sizes, _ = run_frames(make, tone(440, 24000, 0.2), 480)
        delay = delay_ms(make, 24000, 8000, 480)
        print(
            f"  {name:20} first frames out {sizes[:7]}  worst delay {delay:6.1f} ms"
            f"  alias of 6 kHz {rejection_db(make, 24000, 6000, 480):6.1f} dB"
            f"  {cost_us(make, 24000, 480):6.1f} µs/frame"
        )


if __name__ == "__main__":
    main()
