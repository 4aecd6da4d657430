"""The browser softphone in a real headless Chromium, its microphone a fake device playing a WAV."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
import wave
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from bridge.testing.browser import headless_chromium
from bridge.testing.emulator import EmulatorOptions
from bridge.testing.harness import Deployment, loopback_deployment

pytestmark = pytest.mark.e2e


def caller_wav(directory: Path) -> Path:
    """The bundled caller sample twice: the first time with 6 s of silence after it, for a
    4 s answer to play out whole (its mark comes back played); the second with 2.5 s, so
    Chromium's loop speaks over the next answer (a barge-in: its mark comes back cleared)."""
    source = resources.files("bridge.testing").joinpath("data/caller_barge_in.wav")
    with wave.open(str(source), "rb") as wav:
        rate, frames = wav.getframerate(), wav.readframes(wav.getnframes())
    path = directory / "caller.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(frames + bytes(2 * int(rate * 6)) + frames + bytes(2 * int(rate * 2.5)))
    return path


def request(d: Deployment, method: str, path: str, content_type: str = "") -> int:
    req = urllib.request.Request(d.public_url + path, data=b"{}", method=method)
    if content_type:
        req.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(req, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_softphone_talks_to_the_assistant_over_the_media_streams_protocol(tmp_path: Path) -> None:
    flags = (
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        f"--use-file-for-fake-audio-capture={caller_wav(tmp_path)}",
    )

    async def scenario() -> None:
        async with (
            loopback_deployment(
                EmulatorOptions(reply_seconds=4.0), env={"DEV_SOFTPHONE": "1"}
            ) as d,
            headless_chromium(f"{d.public_url}/softphone", extra_flags=flags) as page,
        ):
            await page.evaluate("document.getElementById('call').click()")
            await page.wait_for("window.softphone.state === 'in call'")
            async with asyncio.timeout(15):
                while not (d.emulator.sessions and d.emulator.sessions[0].caller_turns >= 1):
                    await asyncio.sleep(0.05)
            (live,) = d.services.registry.snapshot()["active_calls"]
            assert live["gemini_state"] == "open"

            # The assistant's answer reaches the page and plays out: its mark comes back played.
            await page.wait_for(
                "window.softphone.received >= 40 && window.softphone.marksPlayed >= 1", timeout=15
            )
            # What Gemini heard is the microphone: speech-level 16 kHz audio, in real time.
            session = d.emulator.sessions[0]
            heard = np.frombuffer(bytes(session.audio_in), dtype="<i2").astype(np.float64)
            sent = await page.evaluate("window.softphone.sent")
            assert abs(len(heard) / 16000 - sent * 0.02) < 0.5
            loudest = max(
                float(np.sqrt(np.mean(heard[i : i + 320] ** 2)))
                for i in range(0, len(heard) - 320, 320)
            )
            assert loudest > 1000

            # The file loops: the caller speaks again over the second answer and cuts it off.
            # Its queued audio is dropped and its pending mark echoed as cleared (as Twilio).
            await page.wait_for(
                "window.softphone.clears >= 1 && window.softphone.marksCleared >= 1", timeout=15
            )
            assert d.services.registry.snapshot()["active_calls"][0]["interruptions"] >= 1

            await page.evaluate("document.getElementById('hangup').click()")
            async with asyncio.timeout(5):
                while d.services.registry.active_count:
                    await asyncio.sleep(0.05)
            assert d.services.registry.completed == 1
            assert await page.evaluate("window.softphone.state") == "hung up"
            assert await page.evaluate("window.softphone.underruns") < 5

    asyncio.run(scenario())


def test_softphone_is_off_unless_enabled_and_needs_a_json_post() -> None:
    async def scenario() -> None:
        async with loopback_deployment() as d:
            assert await asyncio.to_thread(request, d, "GET", "/softphone") == 404
            status = await asyncio.to_thread(
                request, d, "POST", "/softphone/call", "application/json"
            )
            assert status == 404
        async with loopback_deployment(env={"DEV_SOFTPHONE": "1"}) as d:
            assert await asyncio.to_thread(request, d, "GET", "/softphone") == 200
            # A form post (which any web page can make) is refused: no preflight, no call.
            status = await asyncio.to_thread(
                request, d, "POST", "/softphone/call", "application/x-www-form-urlencoded"
            )
            assert status == 415
            status = await asyncio.to_thread(
                request, d, "POST", "/softphone/call", "application/json"
            )
            assert status == 200

    asyncio.run(scenario())
