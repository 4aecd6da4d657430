"""``POST /api/amd-status``: Twilio's answering-machine verdict on an outbound call.

A person (``human``) or an unsure verdict (``unknown``): the call's stream, waiting for
it, opens Gemini and the assistant greets. A machine (``machine_end_beep``,
``machine_end_silence``, ``machine_end_other``: the greeting is over; ``fax``): the
persona's voicemail message replaces the call's TwiML, spoken by Twilio after the beep,
then a hang-up; with no message, just the hang-up. The stream stops either way without
a Gemini session having been opened.
"""

from __future__ import annotations

import logging
import re

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from ..call.facts import Direction, MachineAction, is_machine
from ..runtime.services import Services
from ..twilio.rest import TwilioCallError
from .outbound import order_of
from .twilio_form import signed_twilio_form

log = logging.getLogger(__name__)

VERDICT = re.compile(r"[a-z_]{1,32}")


async def amd_status(request: Request) -> Response:
    services: Services = request.app.state.services
    counter = services.metrics.answering_machine
    params = await signed_twilio_form(request, services, counter, "answering-machine callback")
    if isinstance(params, Response):
        return params
    call_sid, answered_by = params["CallSid"], params.get("AnsweredBy", "")
    if not VERDICT.fullmatch(answered_by):
        counter.labels("bad_request").inc()
        return PlainTextResponse("missing or malformed AnsweredBy\n", status_code=400)
    ledger = services.ledger
    facts = await ledger.facts_of(call_sid, order_of(request))
    if facts is None or facts.direction is not Direction.OUTBOUND:
        counter.labels("unknown_call").inc()
        log.warning("answering-machine verdict for %s, a call this bridge did not place", call_sid)
        return Response(status_code=204)
    counter.labels(answered_by).inc()
    if not is_machine(answered_by):
        await ledger.note(call_sid, {"answered_by": answered_by})
        log.info("call %s answered by %s: the conversation starts", call_sid, answered_by)
        return Response(status_code=204)
    persona = services.planner.persona_for(facts, facts.called)
    action = MachineAction.MESSAGE_LEFT if persona.voicemail else MachineAction.HUNG_UP
    # Written before the call changes (its stream ends the call when it stops, and the
    # report reads how), and put right should Twilio refuse.
    await ledger.note(call_sid, {"answered_by": answered_by, "machine_action": action.value})
    rest = services.twilio_calls
    if rest is None:  # placed by a server with TWILIO_ACCOUNT_SID; this one has none
        log.error("call %s: a machine answered and this server cannot change calls", call_sid)
        await ledger.note(call_sid, {"machine_action": MachineAction.NOT_HANDLED.value})
        return Response(status_code=204)
    try:
        if persona.voicemail:
            await rest.say_and_hang_up(call_sid, persona.voicemail, services.twiml.say_voice)
        else:
            await rest.hang_up(call_sid)
    except TwilioCallError as exc:
        log.error("call %s: voicemail not left: %s", call_sid, exc.reason)
        try:
            await rest.hang_up(call_sid)
            action = MachineAction.HUNG_UP
        except TwilioCallError:
            action = MachineAction.NOT_HANDLED
        await ledger.note(call_sid, {"machine_action": action.value})
        return Response(status_code=204)
    log.info(
        "call %s answered by a machine (%s): %s",
        call_sid,
        answered_by,
        "voicemail left" if persona.voicemail else "hung up",
    )
    return Response(status_code=204)
