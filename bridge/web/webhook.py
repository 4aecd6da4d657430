"""``POST /api/inbound-call``: Twilio's voice webhook, answered with TwiML that opens the stream.

Before answering, the operator's system may be asked (CALL_SETUP_URL) which persona
takes the call and with which variables; whatever it does, the call is answered, with
the number's persona when the answer is not usable.
"""

from __future__ import annotations

import logging
import time

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from ..call.facts import CallFacts, Direction, PersonaSource
from ..call.personas import Persona
from ..call.plan import CallPlan
from ..call.report import Closing, ReportOutcome
from ..call.variables import VariablesRefused, checked
from ..gemini.client import client_content_message
from ..gemini.session import GeminiSession
from ..hooks.call_setup import ask_call_setup
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
        await turned_away(services, call_sid, caller, called, reason)
        return Response(busy_twiml(services.twiml), media_type="application/xml")
    if await fleet.answer(call_sid, caller, called) is Claim.TAKEN:
        services.registry.unreserve(call_sid)
        counter.labels("replayed").inc()
        log.warning("webhook refused: call %s was already answered (replay)", call_sid)
        return PlainTextResponse("this call was already answered\n", status_code=409)

    facts = await inbound_facts(services, call_sid, caller, called)
    await services.ledger.write_facts(facts)
    plan = services.planner.for_call(facts, called)
    if services.settings.prewarm:
        prewarm_call(services, call_sid, plan)
    counter.labels("answered").inc()
    log.info("answering call %s as %s", call_sid, plan.persona.name)
    return Response(
        stream_twiml(services, call_sid, caller, called, 1, consent=plan.persona.consent),
        media_type="application/xml",
    )


async def inbound_facts(services: Services, call_sid: str, caller: str, called: str) -> CallFacts:
    """The call's persona and variables: CALL_SETUP_URL's answer, else the number's."""
    settings, personas = services.settings, services.planner.personas
    persona, variables, source = personas.for_number(called), {}, PersonaSource.NUMBER
    if settings.call_setup_url and settings.webhook_secret:
        started = time.perf_counter()
        answer = await ask_call_setup(
            settings.call_setup_url,
            settings.webhook_secret,
            settings.call_setup_timeout,
            call_sid=call_sid,
            caller=caller,
            called=called,
        )
        problem = answer.problem
        chosen: Persona | None = persona
        if answer.persona:
            chosen = personas.find(answer.persona)
            if chosen is None and not problem:
                problem = f"answered an unknown persona {answer.persona[:64]!r}"
        if not problem:
            try:
                variables = checked(answer.variables)
            except VariablesRefused as exc:
                problem = str(exc)
        if problem:
            services.metrics.call_setups.labels("failed").inc()
            source, variables = PersonaSource.CALL_SETUP_FAILED, {}
            log.warning("call setup lookup: %s; the number's persona answers", problem)
        else:
            assert chosen is not None
            services.metrics.call_setups.labels("used").inc()
            persona, source = chosen, PersonaSource.CALL_SETUP
            log.info(
                "call setup lookup answered in %.0f ms: persona %s",
                (time.perf_counter() - started) * 1000,
                persona.name,
            )
    if gaps := persona.missing(variables):
        log.warning(
            "persona %s uses %s and this call has no value for it: left empty",
            persona.name,
            ", ".join(gaps),
        )
    return CallFacts(
        call_sid,
        Direction.INBOUND,
        caller,
        called,
        persona=persona.key,
        variables=variables,
        persona_source=source,
        started_at=time.time(),
        record=(persona.record if persona.record is not None else settings.record_calls)
        and services.twilio_calls is not None,  # recordings are asked of Twilio's REST API
    )


async def turned_away(
    services: Services, call_sid: str, caller: str, called: str, reason: str
) -> None:
    """A call that got the busy answer is over at once: it is reported as such."""
    persona = services.planner.personas.for_number(called)
    facts = CallFacts(
        call_sid, Direction.INBOUND, caller, called, persona=persona.key, started_at=time.time()
    )
    await services.ledger.write_facts(facts)
    await services.ledger.close(call_sid, Closing(ReportOutcome.TURNED_AWAY, reason))


def stream_twiml(
    services: Services,
    call_sid: str,
    caller: str,
    called: str,
    stream: int,
    *,
    consent: str = "",
) -> str:
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
        consent=consent,
    )


def prewarm_call(services: Services, call_sid: str, plan: CallPlan) -> None:
    """Open this call's Gemini session (and ask for its greeting) while Twilio connects."""
    calls = services.calls

    async def open_session() -> GeminiSession:
        session = await calls.open_session(plan.session_config, calls.setup_timeout_s)
        if plan.persona.greeting:
            await session.send(client_content_message(plan.persona.greeting))
        return session

    services.prewarm.start(call_sid, open_session)
