"""An authenticated stream (a stolen or replayed stream URL with a live token) pushing
audio into Gemini, the operator's quota, on a real ``bridge serve`` (review item 3)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from benchmarks.attacks import fast_audio
from bridge.call.resources import CallGuards
from bridge.testing.caller import SILENT_FRAME
from bridge.testing.emulator import EmulatorOptions
from bridge.testing.served import ServedBridge, served_bridge
from bridge.twilio.media_streams import MAX_MEDIA_PAYLOAD_BYTES, media_event, stop_event

pytestmark = pytest.mark.e2e

GEMINI_BYTES_PER_S = 32000  # 16 kHz PCM16, what Gemini hears


@pytest.fixture(scope="module")
def bridge() -> Iterator[ServedBridge]:
    with served_bridge(emulator_options=EmulatorOptions(reply_seconds=0.5)) as served:
        yield served


def gemini_heard_s(bridge: ServedBridge, first_session: int) -> float:
    """Seconds of caller audio the emulator received since ``first_session``, once that
    figure stops growing."""
    heard, last = -1.0, time.monotonic()
    while time.monotonic() - last < 0.5:
        now = sum(len(s.audio_in) for s in bridge.emulator.sessions[first_session:])
        if now != heard:
            heard, last = now, time.monotonic()
        time.sleep(0.05)
    return heard / GEMINI_BYTES_PER_S


def test_audio_far_faster_than_real_time_is_cut_off_after_the_allowance(
    bridge: ServedBridge,
) -> None:
    """Review: 2,586 s of audio in 5 s (517x, 110 MB) reached Gemini and the stream lived
    on. Here half-second payloads at 100 a second (50x; main: never closed)."""
    sessions = len(bridge.emulator.sessions)
    rejected = bridge.metric('bridge_stream_rejections_total{reason="audio_too_fast"}')
    result = asyncio.run(
        fast_audio(
            bridge.caller(), payload_bytes=MAX_MEDIA_PAYLOAD_BYTES, messages_per_s=100, seconds=5
        )
    )
    assert result.close_code == 1008, result
    assert "ahead of the wall clock" in result.close_reason
    assert result.elapsed_s < 2
    # Gemini heard no more than real time plus the allowance (and the frame that tipped it).
    assert gemini_heard_s(bridge, sessions) < result.elapsed_s + CallGuards().audio_ahead_s + 0.6
    sample = 'bridge_stream_rejections_total{reason="audio_too_fast"}'
    assert bridge.metric_once_settled(sample, rejected + 1) == rejected + 1


def test_a_payload_of_more_than_half_a_second_is_refused(bridge: ServedBridge) -> None:
    sessions = len(bridge.emulator.sessions)
    result = asyncio.run(
        fast_audio(bridge.caller(), payload_bytes=48_000, messages_per_s=10, seconds=2)
    )
    assert result.close_code == 1007
    assert f"over the {MAX_MEDIA_PAYLOAD_BYTES}-byte cap" in result.close_reason
    assert gemini_heard_s(bridge, sessions) == 0


def test_twilio_catching_up_after_a_late_start_and_a_hiccup_is_not_cut_off(
    bridge: ServedBridge,
) -> None:
    """What Twilio may do: a start 5 s late with its audio right behind it, a second of
    real time, a 4 s network hiccup, the 4 s it held in one burst, real time again."""
    sessions = len(bridge.emulator.sessions)

    async def call() -> tuple[int, int | None]:
        caller = bridge.caller()
        await caller.fetch_twiml()
        sid, sent = caller.stream_sid, 0

        def frame() -> str:
            nonlocal sent
            sent += 1
            return media_event(
                stream_sid=sid,
                sequence_number=sent + 1,
                chunk=sent,
                timestamp_ms=sent * 20,
                ulaw=SILENT_FRAME,
            )

        async with connect(caller.stream_url, compression=None) as ws:
            for start in caller.start_frames():
                await ws.send(start)
            try:
                for burst, pause_after in ((250, 0), (50, 4.0), (200, 0), (50, 0)):
                    realtime = burst == 50
                    for _ in range(burst):
                        await ws.send(frame())
                        if realtime:
                            await asyncio.sleep(0.02)
                    await asyncio.sleep(pause_after)
                await asyncio.sleep(0.3)
                await ws.send(
                    stop_event(
                        stream_sid=sid,
                        sequence_number=sent + 2,
                        call_sid=caller.call_sid,
                        account_sid=caller.account_sid,
                    )
                )
                await asyncio.wait_for(ws.wait_closed(), 5)
            except ConnectionClosed:
                pass
            return sent, ws.close_code

    sent, code = asyncio.run(call())
    assert code == 1000 and sent == 550  # never cut off...
    assert gemini_heard_s(bridge, sessions) == pytest.approx(sent * 0.02, abs=0.1)  # ...nor lost
