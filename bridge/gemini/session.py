"""One Gemini Live connection over ``websockets``: setup with a deadline, then messages."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from enum import StrEnum
from urllib.parse import urlsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.version import version as websockets_version

from .client import audio_input_message, parse_server_message, setup_message
from .endpoint import GeminiEndpoint
from .wire import GeminiProtocolError, ServerMessage, SessionConfig, SetupComplete

log = logging.getLogger(__name__)

# Gemini answers pings slowly (8-30 s measured): the library's 20 s ping timeout
# closes healthy calls with 1011. Ping rarely and wait long instead.
PING_INTERVAL_S = 30.0
PING_TIMEOUT_S = 90.0
MAX_MESSAGE_BYTES = 8 * 1024 * 1024

# 1007/1008 mean the request itself is wrong (key, model, setup field): retrying cannot help.
CONFIG_CLOSE_CODES = frozenset({1007, 1008})


class SessionState(StrEnum):
    """idle → connecting → open → closed | failed (what the dashboard shows)."""

    IDLE = "idle"
    CONNECTING = "connecting"
    OPEN = "open"
    CLOSED = "closed"
    FAILED = "failed"


class SetupFailure(StrEnum):
    """Why a setup failed (the setup-failure metric's label). CONFIG: the request itself
    is wrong (key, model, setup field), so retrying cannot help."""

    AUTH = "auth"
    TIMEOUT = "timeout"
    HTTP = "http"
    NETWORK = "network"
    CLOSED = "closed"
    PROTOCOL = "protocol"
    CONFIG = "config"


class GeminiSetupError(Exception):
    """The session could not be opened. ``reason`` is safe to log (no secrets)."""

    def __init__(self, reason: str, *, kind: SetupFailure, close_code: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = SetupFailure.CONFIG if close_code in CONFIG_CLOSE_CODES else kind
        self.close_code = close_code

    @property
    def is_config_error(self) -> bool:
        return self.kind is SetupFailure.CONFIG


class GeminiSession:
    """A Live session for one call: ``open()``, then ``send_*`` and ``async for`` messages."""

    def __init__(
        self,
        endpoint: GeminiEndpoint,
        config: SessionConfig,
        *,
        setup_timeout: float = 10.0,
        ws_connect: Callable[..., Awaitable[ClientConnection]] = connect,
    ) -> None:
        """``ws_connect``: websockets' ``connect``; a stand-in where no socket is wanted
        (the per-frame micro-benchmark)."""
        self._endpoint = endpoint
        self._ws_connect = ws_connect
        self._config = config
        self._setup_timeout = setup_timeout
        self._ws: ClientConnection | None = None
        self.state = SessionState.IDLE
        self.setup_seconds: float | None = None
        self.session_id: str | None = None
        self.close_code: int | None = None
        self.close_reason: str = ""

    @property
    def host(self) -> str:
        return urlsplit(self._endpoint.url).hostname or "?"

    async def open(self) -> SetupComplete:
        """Connect, send ``setup`` and wait for ``setupComplete``, all within the setup timeout."""
        self.state = SessionState.CONNECTING
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._setup_timeout):
                try:
                    headers = await self._endpoint.auth.headers()
                except Exception as exc:  # google-auth raises its own types; never leak them
                    raise GeminiSetupError(
                        f"no credentials for {self.host}: {exc.__class__.__name__}",
                        kind=SetupFailure.AUTH,
                    ) from None
                self._ws = await self._ws_connect(
                    self._endpoint.url,
                    additional_headers=headers,
                    open_timeout=None,  # the overall setup deadline covers the handshake
                    ping_interval=PING_INTERVAL_S,
                    ping_timeout=PING_TIMEOUT_S,
                    close_timeout=2,
                    max_size=MAX_MESSAGE_BYTES,
                    compression=None,  # audio does not compress; deflate only costs CPU
                    user_agent_header=f"gemini-phone-bridge websockets/{websockets_version}",
                )
                await self._ws.send(setup_message(self._config))
                while True:
                    message = parse_server_message(await self._ws.recv())
                    if message.setup_complete is not None:
                        break
                    if not message.has_known_fields:
                        raise self._refusal(message)
                    log.warning("ignored a message before setupComplete")
        except asyncio.CancelledError:
            # The call ended while this session was opening: drop the socket at once.
            self.state = SessionState.FAILED
            if self._ws is not None:
                self._ws.transport.abort()
            raise
        except GeminiSetupError:
            await self._fail()
            raise
        except TimeoutError:
            await self._fail()
            raise GeminiSetupError(
                f"no setupComplete from {self.host} within {self._setup_timeout:g} s",
                kind=SetupFailure.TIMEOUT,
            ) from None
        except InvalidStatus as exc:
            await self._fail()
            raise GeminiSetupError(
                f"{self.host} refused the WebSocket handshake with HTTP {exc.response.status_code}",
                kind=SetupFailure.HTTP,
            ) from None
        except ConnectionClosed as exc:
            code, reason = _close_of(exc)
            await self._fail(code, reason)
            raise GeminiSetupError(
                f"{self.host} closed the session during setup: {code} {reason}".rstrip(),
                kind=SetupFailure.CLOSED,
                close_code=code,
            ) from None
        except (OSError, InvalidHandshake) as exc:
            await self._fail()
            raise GeminiSetupError(
                f"cannot connect to {self.host}: {exc.__class__.__name__}",
                kind=SetupFailure.NETWORK,
            ) from None
        except GeminiProtocolError as exc:
            await self._fail()
            raise GeminiSetupError(
                f"bad reply during setup: {exc}", kind=SetupFailure.PROTOCOL
            ) from None
        self.setup_seconds = time.perf_counter() - started
        self.session_id = message.setup_complete.session_id
        self.state = SessionState.OPEN
        return message.setup_complete

    def _refusal(self, message: ServerMessage) -> GeminiSetupError:
        """A frame with none of the known fields during setup: Gemini's way of refusing it
        without a close. Fail at once, with its words, rather than wait out the timeout."""
        error = message.error
        if error is None:
            fields = ", ".join(message.unknown_fields) or "none"
            return GeminiSetupError(
                f"{self.host} answered the setup with an unknown frame (fields: {fields})",
                kind=SetupFailure.PROTOCOL,
            )
        return GeminiSetupError(
            f"{self.host} refused the setup: {error.code} {error.status} {error.message}".strip(),
            kind=SetupFailure.CONFIG if error.is_configuration else SetupFailure.PROTOCOL,
        )

    async def _fail(self, code: int | None = None, reason: str = "") -> None:
        self.state = SessionState.FAILED
        self.close_code, self.close_reason = code, reason
        if self._ws is not None:
            await self._ws.close()

    async def send(self, message: str) -> None:
        assert self._ws is not None, "open() first"
        await self._ws.send(message)

    def send_audio(self, pcm16k: bytes) -> Awaitable[None]:
        """Await it. (Not a coroutine itself: one frame less per 20 ms of the caller's audio.)"""
        assert self._ws is not None, "open() first"
        return self._ws.send(audio_input_message(pcm16k))

    async def receive(self) -> ServerMessage | None:
        """The next server message; None once the connection has closed, and then
        ``close_code``/``close_reason`` say why.

        A frame that does not parse is logged and skipped: one odd message must
        not end a call. (A coroutine, not an async generator: one layer less on
        the path every model chunk takes.)
        """
        assert self._ws is not None, "open() first"
        while True:
            try:
                raw = await self._ws.recv()
            except ConnectionClosed:
                self._record_close()
                return None
            try:
                return parse_server_message(raw)
            except GeminiProtocolError as exc:
                log.warning("skipped a bad Gemini message: %s", exc)

    def _record_close(self) -> None:
        if self._ws is None or self.state in (SessionState.CLOSED, SessionState.FAILED):
            return
        code, reason = _close_of(self._ws)
        self.close_code, self.close_reason = code, reason
        self.state = SessionState.CLOSED

    async def close(self) -> None:
        if self._ws is None:
            self.state = SessionState.CLOSED
            return
        await self._ws.close()
        self._record_close()


def _close_of(source: ConnectionClosed | ClientConnection) -> tuple[int | None, str]:
    """The close code and reason Gemini sent (1006 when the connection just dropped)."""
    if isinstance(source, ConnectionClosed):
        frame = source.rcvd
        if frame is None:
            return 1006, "connection lost"
        return frame.code, frame.reason[:200]
    code = source.close_code
    return code, (source.close_reason or "")[:200]
