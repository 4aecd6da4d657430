"""The benchmark's baseline: a bare relay on the bridge's own stack.

Same uvicorn, Starlette and websockets as the bridge, the same frames each way,
but no audio conversion, no token, no metrics, no marks, no bookkeeping: what
is left is the floor the stack itself sets. The bridge is measured against it.
Up, the caller's μ-law goes to Gemini as it came; down, Gemini's 24 kHz PCM (all
it ever sends) goes to the caller as it came, in the payload of a media event.

With ``--convert-audio`` it also converts the audio as the bridge must (μ-law
8 kHz ↔ PCM 16/24 kHz, with the bridge's own converters and message builders)
and nothing else: the floor for any bridge that speaks Gemini's audio formats,
between the bare relay and the bridge with its features.

Run: ``python -m benchmarks.relay --port P --gemini-url URL --api-key KEY``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json

import pybase64
import uvicorn
import websockets
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.asyncio.client import ClientConnection

from bridge.audio import CallerAudioStream, ModelAudioStream
from bridge.config import DEFAULT_MODEL
from bridge.gemini.client import audio_input_message, setup_message
from bridge.gemini.wire import SessionConfig
from bridge.runtime.server import uvicorn_config
from bridge.twilio.media_streams import media_message


async def relay_up(
    twilio: WebSocket, gemini: ClientConnection, to_gemini: CallerAudioStream | None
) -> None:
    """The caller's frames to Gemini: μ-law as it came, or converted when ``to_gemini``."""
    while True:
        message = json.loads(await twilio.receive_text())
        event = message.get("event")
        if event == "media" and to_gemini is not None:
            ulaw = pybase64.b64decode(message["media"]["payload"])
            await gemini.send(audio_input_message(to_gemini.to_gemini_pcm(ulaw)))
        elif event == "media":
            await gemini.send(
                '{"realtimeInput":{"audio":{"mimeType":"audio/x-mulaw;rate=8000",'
                f'"data":"{message["media"]["payload"]}"}}}}}}'
            )
        elif event == "dtmf":
            await gemini.send(json.dumps({"realtimeInput": {"text": message["dtmf"]["digit"]}}))
        elif event == "stop":
            return


async def relay_down(
    twilio: WebSocket,
    gemini: ClientConnection,
    stream_sid: str,
    to_caller: ModelAudioStream | None,
) -> None:
    """Gemini's audio to the caller: its 24 kHz PCM as it came, or converted when
    ``to_caller``."""
    async for raw in gemini:  # binary frames of UTF-8 JSON, as the bridge reads them
        text = raw.decode() if isinstance(raw, bytes) else raw
        content = json.loads(text).get("serverContent", {})
        for part in content.get("modelTurn", {}).get("parts", []):
            payload = part["inlineData"]["data"]
            if to_caller is not None:  # as the bridge does: the chunk's whole frames at once
                audio = to_caller.to_twilio_audio(pybase64.b64decode(payload))
                if audio:
                    await twilio.send_text(media_message(stream_sid, audio))
                continue
            await twilio.send_text(
                f'{{"event":"media","streamSid":"{stream_sid}","media":{{"payload":"{payload}"}}}}'
            )


def relay_app(gemini_url: str, api_key: str, *, convert_audio: bool = False) -> Starlette:
    setup = setup_message(
        SessionConfig(model=f"models/{DEFAULT_MODEL}", voice="Kore", system_prompt="relay")
    )

    async def relay(twilio: WebSocket) -> None:
        await twilio.accept()
        stream_sid = ""
        while not stream_sid:  # connected, then start
            message = json.loads(await twilio.receive_text())
            if message.get("event") == "start":
                stream_sid = message["streamSid"]
        async with websockets.connect(
            gemini_url,
            additional_headers={"x-goog-api-key": api_key},
            compression=None,
            max_size=1 << 22,
        ) as gemini:
            await gemini.send(setup)
            await gemini.recv()  # setupComplete
            tasks = [
                asyncio.create_task(
                    relay_up(twilio, gemini, CallerAudioStream() if convert_audio else None)
                ),
                asyncio.create_task(
                    relay_down(
                        twilio, gemini, stream_sid, ModelAudioStream() if convert_audio else None
                    )
                ),
            ]
            try:
                await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            except WebSocketDisconnect:
                pass
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await twilio.close()

    return Starlette(routes=[WebSocketRoute("/voice-stream", relay)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--gemini-url", required=True)
    parser.add_argument("--api-key", required=True)
    parser.add_argument(
        "--convert-audio", action="store_true", help="convert the audio as the bridge does"
    )
    args = parser.parse_args()
    # The bridge's own uvicorn settings, so only the app differs.
    app = relay_app(args.gemini_url, args.api_key, convert_audio=args.convert_audio)
    uvicorn.Server(uvicorn_config(app, host=args.host, port=args.port, log_level="warning")).run()


if __name__ == "__main__":
    main()
