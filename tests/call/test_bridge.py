"""The call's I/O loop on the measuring script's socket stand-ins: what reaches each side."""

from __future__ import annotations

import asyncio
import base64
import json

import numpy as np

from bridge.audio import ModelAudioStream
from bridge.testing.in_memory_call import bridge_call


def test_a_message_with_several_audio_parts_reaches_the_caller_whole_and_in_order() -> None:
    rng = np.random.default_rng(7)
    chunks = [rng.integers(-8000, 8000, n, dtype="<i2").tobytes() for n in (1440, 960, 480)]
    parts = [
        {"inlineData": {"mimeType": "audio/pcm;rate=24000", "data": base64.b64encode(c).decode()}}
        for c in chunks
    ]
    message = json.dumps({"serverContent": {"modelTurn": {"role": "model", "parts": parts}}})
    call, twilio, _ = bridge_call([], [message.encode()])
    sent: list[str] = []

    async def send_text(text: str) -> None:
        sent.append(text)

    twilio.send_text = send_text
    asyncio.run(call.run())

    expected = ModelAudioStream()
    audio = b"".join(expected.to_twilio_audio(c) for c in chunks)
    media = [json.loads(m) for m in sent if json.loads(m)["event"] == "media"]
    assert len(media) == 1  # one media message for the whole message's frames
    assert base64.b64decode(media[0]["media"]["payload"]) == audio and len(audio) == 6 * 160
