"""The Starlette app: it only routes. Each route's concern lives in its own module."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import json
import logging
import os
from collections.abc import AsyncIterator
from typing import cast

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from ..call.bridge import CallBridge
from ..runtime.services import Services
from .amd_status import amd_status
from .dashboard import dashboard
from .operator_auth import operator_denial
from .outbound import outbound_call, place_call
from .recording_status import recording_status
from .softphone import softphone_call, softphone_page
from .status_callback import call_status
from .stream_ended import stream_ended
from .webhook import inbound_call

log = logging.getLogger(__name__)

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _version() -> str:
    try:
        return importlib.metadata.version("gemini-phone-bridge")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


VERSION = _version()


def _services(request: Request | WebSocket) -> Services:
    return cast(Services, request.app.state.services)


async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def ready(request: Request) -> Response:
    """Readiness: 503 while full or draining, or while every recent call failed to open
    Gemini, so load balancers send calls elsewhere."""
    services = _services(request)
    reason = services.registry.not_ready_reason
    if reason is not None:
        return JSONResponse({"status": reason}, status_code=503)
    if services.gemini_watch.health.failing:
        status = services.gemini_watch.health.status()
        return _scrubbed_json(services, status, status_code=503)
    return JSONResponse({"status": "ready"})


def _rss_bytes() -> int | None:
    """Resident memory of this process (Linux), for operators and the soak test."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


async def call_stats(request: Request) -> Response:
    if (denied := operator_denial(request)) is not None:
        return denied
    services = _services(request)
    registry = services.registry
    snapshot = await services.fleet_stats.view(services.stats())
    snapshot["process"] = {
        "version": VERSION,
        "uptime_s": registry.uptime_s,
        "capacity": {"max_calls": registry.max_calls, "in_use": registry.in_use},
        "asyncio_tasks": len(asyncio.all_tasks()),
        "rss_bytes": _rss_bytes(),
        "draining": registry.draining,
    }
    return _scrubbed_json(services, snapshot)


def _scrubbed_json(services: Services, body: object, status_code: int = 200) -> Response:
    """Failure reasons come from Gemini's close frames: never let one quote a secret."""
    text = services.scrub(json.dumps(body, ensure_ascii=False, separators=(",", ":")))
    return Response(text, status_code=status_code, media_type="application/json")


async def metrics(request: Request) -> Response:
    if (denied := operator_denial(request)) is not None:
        return denied
    body = _services(request).metrics.render()
    return PlainTextResponse(body, media_type=PROMETHEUS_CONTENT_TYPE)


async def voice_stream(websocket: WebSocket) -> None:
    await CallBridge(websocket, _services(websocket).calls).run()


def create_app(services: Services, *, probe_gemini_at_start: bool = False) -> Starlette:
    """``probe_gemini_at_start``: open a Gemini session in the background once serving, and
    warn if it fails (``serve`` does; tests count their sessions and do not)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if probe_gemini_at_start:
            services.gemini_watch.probe_at_start()
        try:
            async with services.running():
                yield
        finally:
            await services.gemini_watch.close()

    app = Starlette(
        lifespan=lifespan,
        routes=[
            Route("/health", health, methods=["GET"]),
            Route("/ready", ready, methods=["GET"]),
            Route("/api/inbound-call", inbound_call, methods=["POST"]),
            Route("/api/call-status", call_status, methods=["POST"]),
            Route("/api/stream-ended", stream_ended, methods=["POST"]),
            Route("/api/calls", place_call, methods=["POST"]),
            Route("/api/outbound-call", outbound_call, methods=["POST"]),
            Route("/api/amd-status", amd_status, methods=["POST"]),
            Route("/api/recording-status", recording_status, methods=["POST"]),
            Route("/api/calls/stats", call_stats, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
            Route("/dashboard", dashboard, methods=["GET"]),
            Route("/softphone", softphone_page, methods=["GET"]),
            Route("/softphone/call", softphone_call, methods=["POST"]),
            WebSocketRoute("/voice-stream", voice_stream),
        ],
    )
    app.state.services = services
    return app
