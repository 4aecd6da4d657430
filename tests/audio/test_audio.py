"""Audio conversion: what Gemini hears of the caller, and what the caller hears of Gemini."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from bridge.audio import (
    TWILIO_FRAME_BYTES,
    ULAW_SILENCE,
    CallerAudioStream,
    Downsampler3x,
    ModelAudioStream,
    Upsampler2x,
    mulaw,
    pcm16_to_ulaw,
    resample,
    ulaw_to_pcm16,
)


@pytest.fixture(autouse=True, params=["c", "numpy"])
def implementation(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """Every test here runs on every implementation: the C speedups, and numpy and audioop."""
    if request.param == "numpy":
        monkeypatch.setattr(resample, "_speedups", None)
        monkeypatch.setattr(mulaw, "_speedups", None)
        yield "numpy"
        return
    if resample._speedups is None:
        pytest.skip("built without the C speedups (no C compiler when installed)")
    yield "c"


def tone(freq: float, rate: int, seconds: float, amplitude: float = 8000.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return amplitude * np.sin(2 * np.pi * freq * t)


def pcm(samples: np.ndarray) -> bytes:
    return np.clip(np.rint(samples), -32768, 32767).astype("<i2").tobytes()


def samples(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<i2").astype(np.float64)


def peak_frequency(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * rate / len(x))


def rms_db(x: np.ndarray) -> float:
    return float(20 * np.log10(np.sqrt(np.mean(x * x)) + 1e-9))


def band_level_db(x: np.ndarray, rate: int, freq: float) -> float:
    """Level of one frequency, relative to full scale, from a windowed FFT."""
    window = np.hanning(len(x))
    spectrum = np.abs(np.fft.rfft(x * window)) / (window.sum() / 2)
    k = round(freq * len(x) / rate)
    return float(20 * np.log10(spectrum[k - 2 : k + 3].max() / 32768 + 1e-12))


def chunks(data: bytes, sizes: list[int]) -> list[bytes]:
    out, i = [], 0
    for size in sizes:
        out.append(data[i : i + size])
        i += size
    out.append(data[i:])
    return [c for c in out if c]


# --- caller → Gemini ------------------------------------------------------------------------


def test_caller_tone_keeps_frequency_and_level_at_16khz() -> None:
    ulaw = pcm16_to_ulaw(pcm(tone(1000, 8000, 1.0)))
    stream = CallerAudioStream()
    out = b"".join(stream.to_gemini_pcm(ulaw[i : i + 160]) for i in range(0, len(ulaw), 160))
    x = samples(out)[320:]  # skip the filter's first milliseconds
    assert peak_frequency(x, 16000) == pytest.approx(1000, abs=2)
    assert rms_db(x) == pytest.approx(rms_db(tone(1000, 16000, 1.0)), abs=0.3)


def test_every_20ms_frame_in_gives_20ms_out_from_the_first_frame() -> None:
    stream = CallerAudioStream()
    frame = pcm16_to_ulaw(pcm(tone(440, 8000, 0.02)))
    for _ in range(5):
        assert len(stream.to_gemini_pcm(frame)) == 640  # 320 samples at 16 kHz

    model = ModelAudioStream()
    chunk = pcm(tone(440, 24000, 0.02))  # 20 ms at 24 kHz
    assert [len(f) for f in model.to_twilio_frames(chunk)] == [TWILIO_FRAME_BYTES]


def measured_delay_ms(resampler: Upsampler2x | Downsampler3x, rate_in: int, ratio: float) -> float:
    rng = np.random.default_rng(7)
    # Band-limited noise, so the resampler passes it whole.
    noise = np.convolve(rng.normal(0, 4000, rate_in), np.ones(8) / 8, mode="same")
    out = samples(resampler.process(pcm(noise)))
    rate_out = int(rate_in * ratio)
    reference = np.interp(np.arange(len(out)) / rate_out, np.arange(len(noise)) / rate_in, noise)
    lags = range(0, 200)
    scores = [np.dot(out[lag:], reference[: len(out) - lag]) for lag in lags]
    return float(np.argmax(scores) / rate_out * 1000)


def test_resampler_delay_is_under_two_milliseconds() -> None:
    up = measured_delay_ms(Upsampler2x(), 8000, 2)
    down = measured_delay_ms(Downsampler3x(), 24000, 1 / 3)
    assert up == pytest.approx(Upsampler2x.delay_samples / 16, abs=0.13)
    assert down == pytest.approx(Downsampler3x.delay_samples / 24, abs=0.2)
    assert up < 2.0 and down < 2.0


def test_upsampler_suppresses_images_of_the_phone_band() -> None:
    out = samples(Upsampler2x().process(pcm(tone(1000, 8000, 1.0))))[200:]
    assert band_level_db(out, 16000, 1000) > -15
    assert band_level_db(out, 16000, 7000) < band_level_db(out, 16000, 1000) - 60
    out = samples(Upsampler2x().process(pcm(tone(3000, 8000, 1.0))))[200:]
    assert band_level_db(out, 16000, 5000) < band_level_db(out, 16000, 3000) - 55


@pytest.mark.parametrize("freq", [500, 1000, 2000, 3000])
def test_upsampler_passband_is_flat(freq: int) -> None:
    x = tone(freq, 8000, 0.5)
    out = samples(Upsampler2x().process(pcm(x)))[200:]
    assert rms_db(out) == pytest.approx(rms_db(x), abs=0.1)


# --- Gemini → caller ------------------------------------------------------------------------


def model_to_caller(pcm24k: bytes, sizes: list[int]) -> bytes:
    stream = ModelAudioStream()
    frames: list[bytes] = []
    for chunk in chunks(pcm24k, sizes):
        frames.extend(stream.to_twilio_frames(chunk))
    frames.extend(stream.flush())
    assert all(len(f) == TWILIO_FRAME_BYTES for f in frames)
    return b"".join(frames)


def test_model_tone_keeps_frequency_and_level_at_8khz() -> None:
    rng = np.random.default_rng(1)
    source = pcm(tone(1000, 24000, 1.0))
    sizes = [int(s) for s in rng.integers(1, 5000, 30)]  # Gemini's chunks: any size, odd too
    heard = samples(ulaw_to_pcm16(model_to_caller(source, sizes)))[100:8000]
    assert peak_frequency(heard, 8000) == pytest.approx(1000, abs=2)
    assert rms_db(heard) == pytest.approx(rms_db(tone(1000, 8000, 1.0)), abs=0.3)


def test_downsampler_keeps_aliases_out_of_the_phone_band() -> None:
    # 6 kHz and 9 kHz would fold to 2 kHz and 1 kHz at 8 kHz without filtering.
    for freq in (6000, 9000):
        out = samples(Downsampler3x().process(pcm(tone(freq, 24000, 1.0))))[100:]
        assert rms_db(out) < rms_db(tone(freq, 24000, 1.0)) - 60


def test_chunked_conversion_matches_one_shot() -> None:
    rng = np.random.default_rng(3)
    speech_like = pcm(rng.normal(0, 3000, 24000))
    one_shot = Downsampler3x().process(speech_like)
    down = Downsampler3x()
    pieces = chunks(speech_like, [int(s) * 2 for s in rng.integers(1, 900, 60)])
    chunked = b"".join(down.process(p) for p in pieces)
    assert len(chunked) == len(one_shot)
    assert np.max(np.abs(samples(chunked) - samples(one_shot))) <= 1

    caller = pcm(rng.normal(0, 3000, 8000))
    one_shot = Upsampler2x().process(caller)
    up = Upsampler2x()
    chunked = b"".join(
        up.process(p) for p in chunks(caller, [int(s) * 2 for s in rng.integers(1, 300, 40)])
    )
    assert np.max(np.abs(samples(chunked) - samples(one_shot))) <= 1


def test_no_clicks_at_chunk_boundaries() -> None:
    # A click is a jump far beyond what the tone itself does between two samples.
    x = tone(1000, 24000, 0.5)
    heard = samples(ulaw_to_pcm16(model_to_caller(pcm(x), [479, 481, 1, 3, 960, 7, 2001] * 4)))
    steady = heard[40:3900]
    max_step = 8000 * 2 * np.pi * 1000 / 8000  # the tone's own steepest step at 8 kHz
    assert np.max(np.abs(np.diff(steady))) < max_step * 1.1

    caller = CallerAudioStream()
    ulaw = pcm16_to_ulaw(pcm(tone(1000, 8000, 0.5)))
    up = samples(
        b"".join(caller.to_gemini_pcm(ulaw[i : i + 160]) for i in range(0, len(ulaw), 160))
    )
    max_step = 8000 * 2 * np.pi * 1000 / 16000
    assert np.max(np.abs(np.diff(up[64:]))) < max_step * 1.15


def test_odd_length_chunks_carry_the_half_sample() -> None:
    source = pcm(tone(700, 24000, 0.3))
    even = model_to_caller(source, [960] * 7)
    odd = model_to_caller(source, [1, 958, 3, 1001, 5, 777])
    assert odd == even


def test_flush_pads_the_last_frame_with_silence_and_discard_drops_it() -> None:
    stream = ModelAudioStream()
    assert len(stream.to_twilio_frames(pcm(tone(500, 24000, 0.03)))) == 1
    assert stream.pending_bytes == 80  # 30 ms → one 20 ms frame sent, 10 ms waiting
    (last,) = stream.flush()
    assert len(last) == TWILIO_FRAME_BYTES and last[80:] == bytes([ULAW_SILENCE]) * 80
    assert stream.flush() == []

    stream.to_twilio_frames(pcm(tone(500, 24000, 0.01)))
    stream.discard()
    assert stream.pending_bytes == 0 and stream.flush() == []


def test_a_chunk_goes_to_twilio_as_its_whole_frames_in_one_piece() -> None:
    source = pcm(tone(600, 24000, 0.1))  # 100 ms
    whole = ModelAudioStream()
    pieces = [
        whole.to_twilio_audio(source[a:b]) for a, b in ((0, 1920), (1920, 3360), (3360, 4800))
    ]
    # 40 ms → 2 frames at once; 30 ms → 1 frame and 10 ms waiting; 30 ms + the 10 → 2 frames.
    assert [len(p) for p in pieces] == [320, 160, 320]
    framed = ModelAudioStream()
    frames = [
        f
        for a, b in ((0, 1920), (1920, 3360), (3360, 4800))
        for f in framed.to_twilio_frames(source[a:b])
    ]
    assert b"".join(pieces) == b"".join(frames) and all(
        len(f) == TWILIO_FRAME_BYTES for f in frames
    )
    assert whole.pending_bytes == framed.pending_bytes == 0


def test_resampler_state_survives_silence() -> None:
    """A gap of silence is just signal: no reset, so speech after it converts as before."""
    x = np.concatenate([tone(800, 8000, 0.2), np.zeros(8000), tone(800, 8000, 0.2)])
    whole = Upsampler2x().process(pcm(x))
    up = Upsampler2x()
    framed = b"".join(up.process(pcm(x[i : i + 160])) for i in range(0, len(x), 160))
    assert np.max(np.abs(samples(framed) - samples(whole))) <= 1


@pytest.mark.parametrize("implementation", ["c"], indirect=True)
def test_the_c_and_numpy_resamplers_agree_chunk_for_chunk(implementation: str) -> None:
    """Same filters, state and rounding: within one LSB of float rounding, at any chunking,
    full-scale clipping included."""
    rng = np.random.default_rng(7)
    caller = np.clip(rng.standard_normal(8000) * 12000, -32768, 32767)
    caller[100:300] = 32767  # a clipped stretch: the filters overshoot it
    model = np.clip(rng.standard_normal(24000) * 12000, -32768, 32767)
    model[500:800] = -32768
    for make, signal, sizes in (
        (Upsampler2x, pcm(caller), [320, 320, 14, 2, 666] * 20),
        (Downsampler3x, pcm(model), [960, 960, 2, 4, 10, 2000, 26] * 12),
    ):
        outputs = []
        for speedups in (resample._speedups, None):
            saved, resample._speedups = resample._speedups, speedups
            try:
                resampler = make()
                outputs.append(b"".join(resampler.process(c) for c in chunks(signal, sizes)))
            finally:
                resample._speedups = saved
        c_out, numpy_out = samples(outputs[0]), samples(outputs[1])
        assert len(c_out) == len(numpy_out) > 0
        assert np.abs(c_out - numpy_out).max() <= 1
        assert np.count_nonzero(c_out != numpy_out) < len(c_out) / 100


@pytest.mark.parametrize("implementation", ["c"], indirect=True)
def test_the_c_mulaw_encoder_is_audioops_for_every_sample(implementation: str) -> None:
    every = np.arange(-32768, 32768, dtype="<i2").tobytes()
    c_out = pcm16_to_ulaw(every)
    assert len(c_out) == 65536
    assert c_out == mulaw.audioop.lin2ulaw(every, 2)
    with pytest.raises(ValueError):
        pcm16_to_ulaw(b"\x00\x01\x02")


def test_which_implementation_runs_is_reported(implementation: str) -> None:
    assert resample.implementation() == {"c": "C", "numpy": "numpy"}[implementation]
