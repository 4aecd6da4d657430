"""Outbound calls: ``POST /api/calls`` places one, ``POST /api/outbound-call`` is its TwiML.

``POST /api/calls`` is the operator's (it spends money): it always needs
OPERATOR_TOKEN, even from loopback. It checks the order (``call/outbound_order.py``),
keeps a place for the call in admission, asks Twilio's REST API to dial, writes the
call's facts and answers at once with the CallSid; the call rings meanwhile.

When the call is answered Twilio fetches ``/api/outbound-call`` (signed, like every
webhook) and gets the same ``<Connect><Stream>`` an inbound call gets, with its own
single-use token. Twilio's answering-machine detection runs beside it: the stream waits
for its verdict before Gemini is opened (``/api/amd-status``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
import time
from dataclasses import replace

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..call.facts import CallFacts, Direction, PersonaSource
from ..call.outbound_order import OrderRefused, read_order
from ..runtime.services import Services
from ..state import Claim
from ..twilio.rest import OutboundRequest, TwilioCallError
from ..twilio.twiml import hangup_twiml
from .operator_auth import operator_denial
from .twilio_form import BodyRefused, read_capped_body, signed_twilio_form
from .webhook import stream_twiml

log = logging.getLogger(__name__)

MAX_ORDER_BYTES = 32 * 1024
FACTS_WAIT_S = 3.0
ORDER_ID = re.compile(
    r"OR[0-9a-f]{32}"
)  # a call answered the instant it was placed: its facts are on their way


def _refused(status: int, reason: str) -> JSONResponse:
    return JSONResponse({"error": reason}, status_code=status)


async def place_call(request: Request) -> Response:
    services: Services = request.app.state.services
    settings, counter = services.settings, services.metrics.outbound_calls
    if not settings.operator_token:
        counter.labels("refused").inc()
        return _refused(403, "placing calls needs OPERATOR_TOKEN (they cost money): set it")
    if (denied := operator_denial(request)) is not None:
        counter.labels("refused").inc()
        return denied
    rest = services.twilio_calls
    if rest is None:
        counter.labels("refused").inc()
        return _refused(503, "placing calls needs TWILIO_ACCOUNT_SID (Twilio's REST API)")
    if not request.headers.get("content-type", "").startswith("application/json"):
        counter.labels("refused").inc()
        return _refused(415, "expected a JSON body (Content-Type: application/json)")
    try:
        body = await read_capped_body(request, MAX_ORDER_BYTES, 5.0)
        order = read_order(json.loads(body), services.planner.personas, settings.outbound_allowlist)
    except BodyRefused as exc:
        counter.labels("refused").inc()
        return _refused(exc.status, str(exc))
    except (ValueError, RecursionError):  # not JSON, not UTF-8, nested or numbers past limits
        counter.labels("refused").inc()
        return _refused(400, "the body is not JSON this server can read")
    except OrderRefused as exc:
        counter.labels("refused").inc()
        return _refused(exc.status, exc.reason)
    registry = services.registry
    # The place is kept from before the dial (under the order's id, then its CallSid), so
    # calls placed at once cannot overshoot MAX_CONCURRENT_CALLS; none while draining.
    order_id = new_order_id()
    if registry.draining or not registry.reserve(order_id):
        counter.labels("busy").inc()
        return _refused(
            503, f"the bridge is {registry.not_ready_reason or 'full'}: nothing dialled"
        )
    persona = order.persona
    record = persona.record if persona.record is not None else settings.record_calls
    facts = CallFacts(
        "",
        Direction.OUTBOUND,
        caller=order.from_,
        called=order.to,
        persona=persona.key,
        variables=order.variables,
        persona_source=PersonaSource.REQUEST,
        started_at=time.time(),
        amd=True,
        record=record,
        order=order_id,
    )
    ledger = services.ledger
    await ledger.write_order(order_id, facts)
    try:
        call_sid = await rest.place(
            OutboundRequest(
                to=order.to,
                from_=order.from_,
                url=settings.outbound_call_url(order_id),
                status_callback=settings.outbound_status_url(order_id),
                amd_callback=settings.amd_status_url(order_id),
            )
        )
    except TwilioCallError as exc:
        counter.labels("twilio_error").inc()
        if exc.uncertain:
            # Twilio may have placed it: its place stays reserved (it lapses), and its
            # first callback finds its facts by the order's id, so it is reported.
            log.error("outbound call %s may have been placed: %s", order_id, exc.reason)
            return JSONResponse(
                {
                    "error": f"{exc.reason}: the call may have been placed (do not retry at "
                    "once; if it was, its report names this order)",
                    "order": order_id,
                },
                status_code=504,
            )
        registry.unreserve(order_id)
        log.error("outbound call not placed: %s", exc.reason)
        return _refused(502, exc.reason)
    registry.rekey(order_id, call_sid)  # while it rings; the stream takes the place
    await ledger.write_facts(replace(facts, call_sid=call_sid))
    counter.labels("placed").inc()
    log.info("placed call %s as %s", call_sid, persona.name)
    return JSONResponse(
        {
            "call_sid": call_sid,
            "status": "queued",
            "to": order.to,
            "from": order.from_,
            "persona": persona.name,
            "variables": order.variables,
            "order": order_id,
        },
        status_code=201,
    )


def new_order_id() -> str:
    return "OR" + secrets.token_hex(16)


def order_of(request: Request) -> str | None:
    """The ``order`` our own callback URLs carry (Twilio signed them, query and all)."""
    order = request.query_params.get("order", "")
    return order if ORDER_ID.fullmatch(order) else None


async def outbound_call(request: Request) -> Response:
    """Twilio's request for the TwiML of an outbound call it has just connected."""
    services: Services = request.app.state.services
    counter = services.metrics.webhooks
    params = await signed_twilio_form(request, services, counter, "outbound-call webhook")
    if isinstance(params, Response):
        return params
    call_sid, order = params["CallSid"], order_of(request)
    ledger = services.ledger
    facts = await ledger.facts_of(call_sid, order)
    deadline = time.monotonic() + FACTS_WAIT_S
    while facts is None and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        facts = await ledger.facts_of(call_sid, order)
    if facts is None or facts.direction is not Direction.OUTBOUND:
        counter.labels("unknown_call").inc()
        log.warning(
            "outbound-call webhook for %s, a call this bridge did not place: hang up", call_sid
        )
        return Response(hangup_twiml(), media_type="application/xml")
    if await services.fleet.answer(call_sid, facts.caller, facts.called) is Claim.TAKEN:
        counter.labels("replayed").inc()
        log.warning(
            "outbound-call webhook refused: call %s was already answered (replay)", call_sid
        )
        return JSONResponse({"error": "this call was already answered"}, status_code=409)
    await ledger.note(call_sid, {"answered_at": f"{time.time():.3f}"})
    persona = services.planner.persona_for(facts, facts.called)
    counter.labels("answered").inc()
    log.info("outbound call %s answered: connecting its stream", call_sid)
    return Response(
        stream_twiml(services, call_sid, facts.caller, facts.called, 1, consent=persona.consent),
        media_type="application/xml",
    )
