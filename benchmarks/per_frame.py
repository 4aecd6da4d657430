"""The per-frame path alone: µs per 20 ms frame of the bridge's own work each way, without
sockets (what ``scripts/bench.py`` prints first)."""

from __future__ import annotations

import base64
import itertools
import timeit
from typing import Any

import numpy as np

from benchmarks.bench_callers import FRAME_BYTES, caller_signal
from bridge.audio import ulaw_to_pcm16

# --- the per-frame path, alone -------------------------------------------------------------------


def micro_benchmark(number: int = 2000) -> dict[str, float]:
    """µs per 20 ms frame of the bridge's own work each way, no sockets.

    Each call takes the next of 250 different frames: one frame over and over lets the
    CPU learn its branches, and audioop's μ-law encoder then looks several times
    faster than it is on real audio.
    """
    from bridge.audio import CallerAudioStream, ModelAudioStream
    from bridge.gemini.client import audio_input_message, parse_server_message
    from bridge.gemini.server import server_content_message
    from bridge.twilio.media_streams import media_message, parse_twilio_event

    frames = 250
    ulaw = caller_signal(0, frames)
    stream_sid = "MZ" + "0" * 32
    twilio_frames, gemini_frames = [], []
    for k in range(frames):
        frame = ulaw[k * FRAME_BYTES : (k + 1) * FRAME_BYTES]
        twilio_frames.append(
            '{"event":"media","sequenceNumber":"3","media":{"track":"inbound","chunk":"1",'
            f'"timestamp":"20","payload":"{base64.b64encode(frame).decode()}"}},'
            f'"streamSid":"{stream_sid}"}}'
        )
        pcm24 = np.repeat(np.frombuffer(ulaw_to_pcm16(frame), "<i2"), 3).tobytes()
        gemini_frames.append(server_content_message(audio=pcm24).encode())  # binary, as Gemini
    next_twilio, next_gemini = itertools.cycle(twilio_frames), itertools.cycle(gemini_frames)
    up_stream, down_stream = CallerAudioStream(), ModelAudioStream()

    def up() -> None:
        event = parse_twilio_event(next(next_twilio))
        audio_input_message(up_stream.to_gemini_pcm(event.payload))  # type: ignore[union-attr]

    def down() -> None:
        content = parse_server_message(next(next_gemini)).server_content
        assert content is not None
        media_message(stream_sid, b"".join([down_stream.to_twilio_audio(c) for c in content.audio]))

    def best(fn: Any) -> float:
        return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6

    return {"caller_to_gemini_us": round(best(up), 1), "gemini_to_caller_us": round(best(down), 1)}
