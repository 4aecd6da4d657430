"""A Gemini Live emulator: a real WebSocket server speaking BidiGenerateContent.

It is what ``gemini-phone-bridge demo`` and the end-to-end tests talk to instead of Google,
and it is as strict as Google where a bridge can go wrong: the key must be
right, ``setup`` must come first and hold only fields Live knows (else close
1007, as Google does), the model must exist (else 1008). It hears the caller
with a simple energy VAD on the 16 kHz input, answers each caller turn with
bundled speech at 24 kHz in bursts faster than real time (as Gemini does),
and sends ``interrupted`` when the caller talks while its answer is still
playing. Every client message is recorded for tests to inspect.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import secrets
import time
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from ..gemini.server import (
    go_away_message,
    parse_client_message,
    setup_complete_message,
    setup_field,
    unknown_setup_fields,
)
from ..gemini.wire import GeminiProtocolError
from .emulated_model import Conversation, Echo, Memory, close_as_google, send_json
from .emulator_options import (
    DEFAULT_API_KEY,
    EmulatedSession,
    EmulatorOptions,
    FaultPlan,
    Moment,
    ScriptedToolCall,
    bundled_reply,
)

__all__ = [
    "DEFAULT_API_KEY",
    "EmulatedSession",
    "EmulatorOptions",
    "FaultPlan",
    "GeminiEmulator",
    "Moment",
    "ScriptedToolCall",
    "bundled_reply",
]

log = logging.getLogger(__name__)
AI_STUDIO_PATHS = frozenset(
    f"/ws/google.ai.generativelanguage.{v}.GenerativeService.BidiGenerateContent"
    for v in ("v1beta", "v1alpha")
)
AI_STUDIO_PATH = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"
VERTEX_PATHS = frozenset(
    f"/ws/google.cloud.aiplatform.{v}.LlmBidiService/BidiGenerateContent" for v in ("v1beta1", "v1")
)
KNOWN_MODELS = frozenset(
    {
        "gemini-3.8-live",
        "gemini-3.8-live-extended-thinking",
        "gemini-3.1-flash-live-preview",
        "gemini-2.5-flash-native-audio-preview-12-2025",
        "gemini-2.5-flash-native-audio-latest",
        "gemini-live-2.5-flash-native-audio",
    }
)
# What 3.x models refuse in setup (Google: 1007, or a setup that never completes).
NOT_ON_3X: tuple[tuple[str, ...], ...] = (
    ("generationConfig", "thinkingConfig"),
    ("generationConfig", "enableAffectiveDialog"),
    ("proactivity",),
)


class GeminiEmulator:
    """``await start()``, point the bridge at ``url``, inspect ``sessions``, ``await stop()``."""

    def __init__(self, options: EmulatorOptions | None = None) -> None:
        self.options = options or EmulatorOptions()
        self.sessions: list[EmulatedSession] = []
        self._conversations_begun = 0
        self._server: Server | None = None
        self._open: set[ServerConnection] = set()
        self._handles: dict[str, ServerConnection] = {}  # resumption handle → issuing socket
        self._memories: dict[str, Memory] = {}  # resumption handle → its conversation
        self._conversations: dict[ServerConnection, Conversation] = {}
        self._fault_tasks: set[asyncio.Task[None]] = set()
        self.port = 0
        self.host = "127.0.0.1"

    @property
    def url(self) -> str:
        """The AI Studio endpoint on this emulator (v1beta, as Google's default)."""
        return f"ws://{self.host}:{self.port}" + AI_STUDIO_PATH

    @property
    def vertex_url(self) -> str:
        return f"ws://{self.host}:{self.port}" + sorted(VERTEX_PATHS)[0]

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> GeminiEmulator:
        self._server = await serve(
            self._handle,
            host,
            port,
            process_request=self._check_path,
            ping_interval=None,
            max_size=4 * 1024 * 1024,
            compression=None,
        )
        self.host = host
        self.port = next(iter(self._server.sockets)).getsockname()[1]
        return self

    async def stop(self) -> None:
        for task in list(self._fault_tasks):
            task.cancel()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def __aenter__(self) -> GeminiEmulator:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _check_path(self, connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0].replace("//", "/")
        if path in AI_STUDIO_PATHS or path in VERTEX_PATHS:
            return None
        return connection.respond(HTTPStatus.NOT_FOUND, "Not Found\n")

    def _authenticate(self, headers: Headers) -> tuple[str | None, tuple[int, str] | None]:
        key = headers.get("x-goog-api-key")
        bearer = headers.get("authorization", "")
        if key is not None:
            if self.options.api_key is not None and key != self.options.api_key:
                return None, (1007, "API key not valid. Please pass a valid API key.")
            return "api_key", None
        if bearer.lower().startswith("bearer "):
            token = bearer[7:].strip()
            if self.options.bearer_token is not None and token != self.options.bearer_token:
                return None, (1008, "Request had invalid authentication credentials.")
            return "bearer", None
        return None, (
            1008,
            "Method doesn't allow unregistered callers (callers without established identity). "
            "Please use API Key or other form of API consumer identity to call this API.",
        )

    async def _handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        auth, refusal = self._authenticate(ws.request.headers)
        index = len(self.sessions)
        session = EmulatedSession(path=ws.request.path, auth=auth or "none")
        session.quota_project = ws.request.headers.get("x-goog-user-project")
        self.sessions.append(session)
        self._open.add(ws)
        faults = self.options.faults_by_connection.get(index, self.options.faults) or FaultPlan()
        fault_task: asyncio.Task[None] | None = None
        try:
            if refusal is not None:
                await close_as_google(ws, *refusal)
                return
            try:
                async with asyncio.timeout(10):
                    first = parse_client_message(await ws.recv())
            except (TimeoutError, GeminiProtocolError):
                await close_as_google(
                    ws, 1007, "Invalid JSON payload received. Expected setup first."
                )
                return
            session.messages.append(first)
            if first.setup is None:
                await close_as_google(
                    ws, 1007, "Invalid JSON payload received. The first message must be setup."
                )
                return
            problem = self._check_setup(first.setup, session) or self._check_resumption(
                first.setup, session
            )
            if problem is not None:
                await close_as_google(ws, *problem)
                return
            session.setup = first.setup
            if faults.setup_delay:
                await asyncio.sleep(faults.setup_delay)
            if faults.refuse_setup:
                await close_as_google(ws, 1011, "The service is currently unavailable.")
                return
            if faults.setup_error is not None:  # refused with a frame, not a close: then silence
                await send_json(ws, json.dumps(faults.setup_error))
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(30):
                        await ws.wait_closed()
                return
            await send_json(ws, setup_complete_message(secrets.token_hex(8)))
            if self.options.echo:
                await Echo(ws, session).run()
                return
            handle = session.resumed_from
            memory = self._memories.get(handle or "")
            if memory is None:
                self._conversations_begun += 1
                memory = Memory(list(self.options.tool_script), self._conversations_begun)
            session.turns_known_at_start = memory.caller_turns
            session.conversation = memory.number
            conversation = Conversation(
                ws, session, self.options, lambda: self._issue(ws, memory), memory
            )
            self._conversations[ws] = conversation
            fault_task = asyncio.create_task(self._inject(ws, conversation, faults))
            await conversation.run()
        except ConnectionClosed:
            pass
        finally:
            if fault_task is not None:
                fault_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await fault_task
            self._open.discard(ws)
            self._conversations.pop(ws, None)
            session.close_code = ws.close_code
            session.close_reason = ws.close_reason or ""

    def _issue(self, ws: ServerConnection, memory: Memory) -> str:
        handle = f"emulated-handle-{len(self._handles) + 1}-{secrets.token_hex(6)}"
        self._handles[handle] = ws
        self._memories[handle] = memory
        return handle

    def _check_resumption(
        self, setup: dict[str, Any], session: EmulatedSession
    ) -> tuple[int, str] | None:
        handle = setup_field(setup, "sessionResumption", "handle")
        if not handle:
            return None
        session.resumed_from = handle
        owner = self._handles.get(handle)
        if owner is None:
            if self.options.reject_unknown_handles:
                return 1008, "Session resumption handle is invalid or has expired."
            return None
        if owner in self._open:
            # Google refuses to resume a session whose old socket is still open.
            return 1011, "Internal error encountered."
        return None

    async def _inject(
        self, ws: ServerConnection, conversation: Conversation, plan: FaultPlan
    ) -> None:
        """Run one connection's scripted faults, in time order."""
        started = time.monotonic()
        if plan.go_away_on is not None:
            await self._go_away_at(conversation, plan.go_away_on)
        events: list[tuple[float, str]] = []
        if plan.go_away_at is not None or plan.go_away_on is not None:
            at = (time.monotonic() - started) + (plan.go_away_at or 0.0)
            events.append((at, "go_away"))
            events.append((at + plan.go_away_time_left, "deadline"))
        if plan.close_at is not None:
            events.append((plan.close_at, "close"))
        if plan.stall_at is not None:
            events.append((plan.stall_at, "stall"))
        for at, what in sorted(events):
            await asyncio.sleep(max(0.0, started + at - time.monotonic()))
            if what == "go_away":
                await send_json(ws, go_away_message(plan.go_away_time_left))
            elif what == "deadline":
                await close_as_google(ws, 1011, "Deadline expired before operation could complete.")
                return
            elif what == "close":
                reason = "Internal error encountered." if plan.close_code == 1011 else "fault"
                await close_as_google(ws, plan.close_code, reason)
                return
            elif what == "stall":
                conversation.stalled = True

    @staticmethod
    async def _go_away_at(conversation: Conversation, moment: Moment) -> None:
        """Until ``moment`` first comes on this connection."""
        if moment is Moment.IDLE:  # the answer has played out at the caller
            await conversation.moments[Moment.ANSWER_PLAYING].wait()
            await asyncio.sleep(max(0.0, conversation.playing_until - time.monotonic()))
            return
        await conversation.moments[moment].wait()

    async def inject_fault(self, kind: str, rng: random.Random) -> bool:
        """A fault on one open session picked at random: "go_away" (10 s left, then 1011),
        "close" (1011 now) or "stall" (silent from now on). False when none is open."""
        open_ones = [ws for ws in self._open if ws in self._conversations]
        if not open_ones:
            return False
        ws = rng.choice(open_ones)
        if kind == "go_away":
            await send_json(ws, go_away_message(10.0))
            task = asyncio.create_task(self._deadline(ws, 10.0))
            self._fault_tasks.add(task)
            task.add_done_callback(self._fault_tasks.discard)
        elif kind == "close":
            await close_as_google(ws, 1011, "Internal error encountered.")
        elif kind == "stall":
            self._conversations[ws].stalled = True
        return True

    async def _deadline(self, ws: ServerConnection, after: float) -> None:
        await asyncio.sleep(after)
        await close_as_google(ws, 1011, "Deadline expired before operation could complete.")

    def expire_handles(self) -> None:
        """Forget every resumption handle issued so far (as after Google's 2 h validity)."""
        self._handles.clear()

    async def drop_all(self, code: int = 1011, reason: str = "Internal error encountered.") -> int:
        """Close every open session as Google does on a fault; returns how many."""
        connections = list(self._open)
        await asyncio.gather(*(close_as_google(ws, code, reason) for ws in connections))
        return len(connections)

    def _check_setup(
        self, setup: dict[str, Any], session: EmulatedSession
    ) -> tuple[int, str] | None:
        unknown = unknown_setup_fields(setup)
        if unknown:
            path, _, name = unknown[0].rpartition(".")
            return 1007, (
                f"Invalid JSON payload received. Unknown name \"{name}\" at '{path}': "
                "Cannot find field."
            )
        model = setup_field(setup, "model")
        if not isinstance(model, str):
            return 1007, "Invalid JSON payload received. setup.model is required."
        name = model.rsplit("/", 1)[-1]
        prefix_ok = (
            model == f"models/{name}" if session.path in AI_STUDIO_PATHS else "/models/" in model
        )
        if name not in KNOWN_MODELS or not prefix_ok:
            return 1008, f"{model} is not found for API version v1beta, or is not supported"
        if name.startswith("gemini-3"):
            for field_path in NOT_ON_3X:
                if setup_field(setup, *field_path) is not None:
                    dotted = ".".join(field_path)
                    return 1007, f"Invalid JSON payload: {dotted} is not supported by {name}"
        modalities = setup_field(setup, "generationConfig", "responseModalities")
        if modalities != ["AUDIO"]:
            return 1007, "Request contains an invalid argument: responseModalities must be [AUDIO]."
        return None
