"""The whole product on loopback: the Gemini emulator and the real server under uvicorn.

``gemini-phone-bridge demo`` and the end-to-end tests both use it, so what the tests prove
is what the demo shows. Nothing here is faked below the sockets: the server is
the production app, configured by environment-style settings, reached over
real TCP on ephemeral ports.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass

from ..call.resources import CallGuards
from ..config import Settings
from ..gemini.endpoint import endpoint_from_settings
from ..runtime.loading import load
from ..runtime.server import DrainingServer, uvicorn_config
from ..runtime.services import Services
from ..web.app import create_app
from .caller import SimulatedCaller
from .emulator import EmulatorOptions, GeminiEmulator


@dataclass
class Deployment:
    settings: Settings
    services: Services
    emulator: GeminiEmulator
    public_url: str
    server: DrainingServer

    def caller(self, **kwargs: object) -> SimulatedCaller:
        return SimulatedCaller(self.public_url, self.settings.twilio_auth_token, **kwargs)  # type: ignore[arg-type]


def _bound_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.setblocking(False)
    return sock


async def _nothing_to_drain() -> None:
    return None


@contextlib.asynccontextmanager
async def serve_app(
    app: object, sock: socket.socket, drain: Callable[[], Awaitable[None]] | None = None
) -> AsyncIterator[DrainingServer]:
    """Run uvicorn (draining as in production) on an already-bound socket."""
    config = uvicorn_config(app, log_level="warning", access_log=False)
    server = DrainingServer(config, drain or _nothing_to_drain, freeze_startup_objects=False)
    task = asyncio.create_task(server.serve(sockets=[sock]), name="uvicorn")
    try:
        async with asyncio.timeout(10):
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)
        yield server
    finally:
        server.should_exit = True
        try:
            async with asyncio.timeout(10):
                await task
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


@contextlib.asynccontextmanager
async def loopback_deployment(
    emulator_options: EmulatorOptions | None = None,
    env: Mapping[str, str] | None = None,
    vertex_credentials: object = None,
    twilio_http_client: object = None,
    guards: CallGuards | None = None,
) -> AsyncIterator[Deployment]:
    """Start the emulator and the server; ``env`` overrides or adds settings.

    With ``vertex_credentials`` (a google-auth-shaped object) the bridge uses the
    Vertex backend: OAuth bearer tokens, the Vertex path and model resource name.
    """
    api_key = "test-key-" + secrets.token_hex(8)
    options = emulator_options or EmulatorOptions()
    if options.api_key is not None:
        options.api_key = api_key
    async with GeminiEmulator(options) as emulator:
        sock = _bound_socket()
        port = sock.getsockname()[1]
        public_url = f"http://127.0.0.1:{port}"
        environ = {
            "PUBLIC_URL": public_url,
            "TWILIO_AUTH_TOKEN": "test-auth-" + secrets.token_hex(12),
            "GEMINI_API_KEY": api_key,
            "GEMINI_LIVE_URL": emulator.url,
            "GREETING": "",  # tests that want the assistant to speak first set it
            **(env or {}),
        }
        if vertex_credentials is not None:
            environ.update(
                GEMINI_API_KEY="",
                GOOGLE_CLOUD_PROJECT="emulated",
                GEMINI_LIVE_URL=emulator.vertex_url,
            )
        settings = load(environ, env_file=None)
        endpoint = endpoint_from_settings(settings, credentials=vertex_credentials)
        services = Services.build(settings, endpoint, twilio_http_client, guards)
        async with serve_app(create_app(services), sock, services.drain) as server:
            yield Deployment(settings, services, emulator, public_url, server)
