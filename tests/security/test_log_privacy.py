"""What a real ``bridge serve`` writes to its log about a call, even at DEBUG: no line per
frame, no audio, no token, and no caller speech unless LOG_TRANSCRIPTS asks for it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from bridge.testing.emulator import EmulatorOptions
from bridge.testing.served import ServedBridge, served_bridge
from bridge.testing.speech import load_speech

pytestmark = pytest.mark.e2e

SPEECH = load_speech("caller_barge_in.wav")  # ~1.5 s
ANSWER = "Here is what I found about your order"


@pytest.fixture(scope="module")
def bridge() -> Iterator[ServedBridge]:
    with served_bridge(
        {"LOG_LEVEL": "DEBUG"}, EmulatorOptions(reply_seconds=1.0, answer_text=ANSWER)
    ) as served:
        yield served


def test_a_call_at_debug_logs_events_not_frames_nor_speech(bridge: ServedBridge) -> None:
    """Review: at DEBUG there was a line per frame (uvicorn's websockets logging every
    message, audio and the start's token in it), and transcripts were logged by default."""
    lines_before = len(bridge.log().splitlines())

    async def call() -> tuple[str, int]:
        caller = bridge.caller()
        async with caller.dial() as call:
            await call.say(SPEECH)
            await call.wait_for_answer(timeout=10)
            await call.wait_until_quiet(quiet_s=0.3, timeout=10)
        return caller.parameters["token"], caller.result.frames_sent

    token, frames = asyncio.run(call())
    log = bridge.log_once_it_shows("call ended")
    lines = log.splitlines()[lines_before:]
    assert frames > 150
    assert len(lines) < 60, f"{len(lines)} lines for a call of {frames} frames"
    assert "TEXT '" not in log and '"event":"media"' not in log
    assert token not in log and token.partition(".")[2] not in log
    assert ANSWER not in log  # the transcript stays in the stats' tail
