"""``POST /api/inbound-call``: Twilio's voice webhook, answered with TwiML that opens the stream."""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from ..gemini.client import client_content_message
from ..gemini.session import GeminiSession
from ..runtime.services import Services
from ..state import Claim
from ..twilio.twiml import busy_twiml, connect_stream_twiml
from .twilio_form import signed_twilio_form

log = logging.getLogger(__name__)


async def inbound_call(request: Request) -> Response:
    services: Services = request.app.state.services
    counter = services.metrics.webhooks
    params = await signed_twilio_form(request, services, counter, "webhook")
    if isinstance(params, Response):
        return params

    call_sid = params["CallSid"]
    caller, called = params.get("From", ""), params.get("To", "")
    fleet = services.fleet
    # Alone, this server is the only one that can take the stream: it reserves a place.
    # In a fleet the stream may reach any server, and one without room passes it on.
    if not fleet.shared and not services.registry.reserve(call_sid):
        reason = services.registry.not_ready_reason or "full"
        counter.labels(f"busy_{reason}").inc()
        log.warning("turning call %s away: %s", call_sid, reason)
        return Response(busy_twiml(services.twiml), media_type="application/xml")
    if await fleet.answer(call_sid, caller, called) is Claim.TAKEN:
        services.registry.unreserve(call_sid)
        counter.labels("replayed").inc()
        log.warning("webhook refused: call %s was already answered (replay)", call_sid)
        return PlainTextResponse("this call was already answered\n", status_code=409)

    if services.settings.prewarm:
        prewarm_call(services, call_sid, called)
    counter.labels("answered").inc()
    log.info("answering call %s", call_sid)
    return Response(
        stream_twiml(services, call_sid, caller, called, 1), media_type="application/xml"
    )


def stream_twiml(services: Services, call_sid: str, caller: str, called: str, stream: int) -> str:
    """``<Connect><Stream>`` for the call's stream number ``stream``, with its own token."""
    settings = services.settings
    token = services.stream_tokens.mint(call_sid, caller, called, stream)
    return connect_stream_twiml(
        services.twiml,
        settings.stream_url,
        {"callSid": call_sid, "from": caller, "to": called, "token": token},
        action_url=settings.stream_ended_url(stream),
        status_callback=settings.status_callback_url,
        say_before=stream == 1,
    )


def prewarm_call(services: Services, call_sid: str, called: str) -> None:
    """Open this call's Gemini session (and ask for its greeting) while Twilio connects."""
    plan = services.planner.for_number(called)
    calls = services.calls

    async def open_session() -> GeminiSession:
        session = await calls.open_session(plan.session_config, calls.setup_timeout_s)
        if plan.persona.greeting:
            await session.send(client_content_message(plan.persona.greeting))
        return session

    services.prewarm.start(call_sid, open_session)
