"""The Starlette app: it only routes. Each route's concern lives in its own module."""

from __future__ import annotations

import asyncio
import logging
import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from .call_bridge import CallBridge
from .dashboard import dashboard
from .operator_auth import operator_denial
from .services import Services
from .softphone import softphone_call, softphone_page
from .status_callback import call_status
from .webhook import inbound_call

log = logging.getLogger(__name__)

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _services(request: Request | WebSocket) -> Services:
    return request.app.state.services


async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def ready(request: Request) -> Response:
    """Readiness: 503 while full or draining, so load balancers send calls elsewhere."""
    reason = _services(request).admission.not_ready_reason
    if reason is not None:
        return JSONResponse({"status": reason}, status_code=503)
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
    snapshot = services.registry.snapshot()
    snapshot["process"] = {
        "asyncio_tasks": len(asyncio.all_tasks()),
        "rss_bytes": _rss_bytes(),
        "draining": services.admission.draining,
    }
    return JSONResponse(snapshot)


async def metrics(request: Request) -> Response:
    if (denied := operator_denial(request)) is not None:
        return denied
    body = _services(request).metrics.render()
    return PlainTextResponse(body, media_type=PROMETHEUS_CONTENT_TYPE)


async def voice_stream(websocket: WebSocket) -> None:
    await CallBridge(websocket, _services(websocket)).run()


def create_app(services: Services) -> Starlette:
    app = Starlette(
        routes=[
            Route("/health", health, methods=["GET"]),
            Route("/ready", ready, methods=["GET"]),
            Route("/api/inbound-call", inbound_call, methods=["POST"]),
            Route("/api/call-status", call_status, methods=["POST"]),
            Route("/api/calls/stats", call_stats, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
            Route("/dashboard", dashboard, methods=["GET"]),
            Route("/softphone", softphone_page, methods=["GET"]),
            Route("/softphone/call", softphone_call, methods=["POST"]),
            WebSocketRoute("/voice-stream", voice_stream),
        ]
    )
    app.state.services = services
    return app
