"""A tiny stand-in for the bridge, over real sockets: it answers Twilio's webhooks with a
``<Connect><Stream>`` to an echo WebSocket, and keeps every request Twilio made, with
whether its ``X-Twilio-Signature`` was valid (checked with the twilio library)."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.parse
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect
from twilio.request_validator import RequestValidator

from bridge.testing.harness import _bound_socket, serve_app

ACCOUNT = "AC" + "1" * 32
TOKEN = "tiny-bridge-auth-token"


def run(coro: Coroutine[Any, Any, Any], timeout: float = 30) -> Any:
    async def bounded() -> Any:
        async with asyncio.timeout(timeout):
            return await coro

    return asyncio.run(bounded())


async def until(predicate: Any, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


@dataclass
class Seen:
    path: str
    url: str  # as Twilio requested it, query included
    form: dict[str, str]
    signature_valid: bool
    at: float


@dataclass
class TinyBridge:
    base: str = ""
    seen: list[Seen] = field(default_factory=list)
    streams: list[list[dict[str, Any]]] = field(default_factory=list)  # events per stream
    twiml: str | None = None  # the webhook's answer (default: connect to /echo)
    next_twiml: str = "<Response><Say>Goodbye.</Say><Hangup/></Response>"  # /api/next's

    def at(self, path: str) -> list[Seen]:
        return [s for s in self.seen if s.path == path]

    def connect_twiml(self, action: bool = False) -> str:
        """Connect to the echo (which closes the stream when the caller presses a key)."""
        ws = self.base.replace("http://", "ws://") + "/echo"
        then = f' action="{self.base}/api/next"' if action else ""
        stream = f'<Connect{then}><Stream url="{ws}"/></Connect>'
        return f'<?xml version="1.0"?><Response>{stream}</Response>'


@asynccontextmanager
async def tiny_bridge(token: str = TOKEN) -> AsyncIterator[TinyBridge]:
    bridge = TinyBridge()
    validator = RequestValidator(token)

    async def keep(request: Request) -> Seen:
        body = (await request.body()).decode()
        form = dict(urllib.parse.parse_qsl(body, keep_blank_values=True))  # no python-multipart
        query = f"?{request.url.query}" if request.url.query else ""
        url = bridge.base + request.url.path + query
        valid = validator.validate(url, form, request.headers.get("x-twilio-signature", ""))
        seen = Seen(request.url.path, url, form, valid, time.monotonic())
        bridge.seen.append(seen)
        return seen

    async def webhook(request: Request) -> Response:
        seen = await keep(request)
        if seen.path == "/api/next":
            return Response(bridge.next_twiml, media_type="application/xml")
        twiml = bridge.twiml or bridge.connect_twiml()
        return Response(twiml, media_type="application/xml")

    async def callback(request: Request) -> Response:
        await keep(request)
        return Response("", status_code=204)

    async def echo(ws: WebSocket) -> None:
        await ws.accept()
        events: list[dict[str, Any]] = []
        bridge.streams.append(events)
        try:
            while True:
                message = json.loads(await ws.receive_text())
                events.append(message)
                if message["event"] == "media":
                    payload = message["media"]["payload"]
                    answer = {
                        "event": "media",
                        "streamSid": message["streamSid"],
                        "media": {"payload": payload},
                    }
                    await ws.send_text(json.dumps(answer))
                elif message["event"] == "stop":
                    break
                elif message["event"] == "dtmf":
                    await ws.close(1000)
                    break
        except WebSocketDisconnect:
            pass

    routes: list[Any] = [
        Route(path, webhook, methods=["POST"])
        for path in ("/api/outbound-call", "/api/inbound-call", "/api/next")
    ]
    routes += [
        Route(path, callback, methods=["POST"])
        for path in ("/api/call-status", "/api/amd-status", "/api/recording-status")
    ]
    routes.append(WebSocketRoute("/echo", echo))
    sock = _bound_socket()
    bridge.base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    async with serve_app(Starlette(routes=routes), sock):
        yield bridge
