"""``GET /softphone`` (``DEV_SOFTPHONE=1`` only): talk to the assistant from a browser.

The page speaks the Media Streams protocol over ``/voice-stream`` exactly as
Twilio does, so a developer hears the real bridge with no Twilio account. The
stream is authenticated as a real call's is: ``POST /softphone/call`` takes a
place like the webhook does and hands the page a single-use stream token.
"""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response

from ..runtime.services import Services
from .operator_auth import operator_denial
from .webhook import inbound_facts, prewarm_call

log = logging.getLogger(__name__)

PAGE = (Path(__file__).parent / "pages" / "softphone.html").read_text(encoding="utf-8")
SOFTPHONE_CALLER = "softphone"
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'unsafe-inline' blob:; "
    "style-src 'unsafe-inline'; connect-src 'self' ws: wss:; media-src 'self' blob:; "
    "frame-ancestors 'none'",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}


def _refusal(request: Request) -> Response | None:
    services: Services = request.app.state.services
    if not services.settings.dev_softphone:
        return PlainTextResponse("not found\n", status_code=404)
    return operator_denial(request, browser=True)


async def softphone_page(request: Request) -> Response:
    if (refused := _refusal(request)) is not None:
        return refused
    return HTMLResponse(PAGE, headers=HEADERS)


async def softphone_call(request: Request) -> Response:
    """Start a browser call: a place, a fresh CallSid and the stream's token.

    A JSON body is required so another site cannot start calls from the
    developer's browser: cross-site JSON posts need a preflight we never grant.
    """
    if (refused := _refusal(request)) is not None:
        return refused
    if not request.headers.get("content-type", "").startswith("application/json"):
        return JSONResponse({"error": "expected application/json"}, status_code=415)
    services: Services = request.app.state.services
    call_sid = "CA" + secrets.token_hex(16)
    if not services.registry.reserve(call_sid):
        reason = services.registry.not_ready_reason or "full"
        return JSONResponse({"error": f"the bridge is {reason}"}, status_code=503)
    called = request.query_params.get("to", "")[:32]
    await services.fleet.answer(call_sid, SOFTPHONE_CALLER, called)
    facts = await inbound_facts(services, call_sid, SOFTPHONE_CALLER, called)
    await services.ledger.write_facts(facts)
    if services.settings.prewarm:
        prewarm_call(services, call_sid, services.planner.for_call(facts, called))
    token = services.stream_tokens.mint(call_sid, SOFTPHONE_CALLER, called)
    log.info("softphone call %s starting", call_sid)
    return JSONResponse(
        {
            "callSid": call_sid,
            "streamSid": "MZ" + secrets.token_hex(16),
            "parameters": {
                "callSid": call_sid,
                "from": SOFTPHONE_CALLER,
                "to": called,
                "token": token,
            },
        },
        headers={"Cache-Control": "no-store"},
    )
