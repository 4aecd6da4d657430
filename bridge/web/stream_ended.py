"""``POST /api/stream-ended?stream=N``: Twilio's ``<Connect action>`` request, made when
the call's stream ``N`` has ended while the call goes on.

Any server of the fleet may be asked. It answers from the call's shared record
(``call.shared_call.after_stream``): a fresh ``<Connect><Stream>`` with a new token for
the call's next stream (its server was deployed away or died, or Twilio's socket
dropped), the apology (Gemini failed, or the call cannot move again), or a hang-up (the
call ended by design). A request about a stream that is not the call's current one, or
about a stream already handed on, is a replay: 409, as for a replayed webhook. While
the call's server has not yet said how its stream ended, Twilio is asked to wait a
second and ask again (``<Pause><Redirect>``), a few times at most; after that the
server is taken to be stuck and the call moves anyway.
"""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from ..call.report import Closing
from ..call.shared_call import AfterStream, CallStatus, EndReason
from ..runtime.services import Services
from ..twilio.twiml import apology_twiml, hangup_twiml, wait_twiml
from .twilio_form import signed_twilio_form
from .webhook import stream_twiml

log = logging.getLogger(__name__)

MAX_STREAM_NUMBER = 1000
MAX_WAITS = 5  # × (ACTION_WAIT_S + 1 s of <Pause>): then the owner is taken as stuck


def _xml(body: str) -> Response:
    return Response(body, media_type="application/xml")


async def stream_ended(request: Request) -> Response:
    services: Services = request.app.state.services
    counter = services.metrics.stream_ends
    params = await signed_twilio_form(request, services, counter, "stream-ended request")
    if isinstance(params, Response):
        return params
    text = request.query_params.get("stream", "")
    if not text.isdigit() or not 1 <= int(text) <= MAX_STREAM_NUMBER:
        counter.labels("bad_request").inc()
        return PlainTextResponse("stream must be the ended stream's number\n", status_code=400)
    waited_text = request.query_params.get("waited", "0")
    if not waited_text.isdigit() or int(waited_text) > MAX_WAITS:
        counter.labels("bad_request").inc()
        return PlainTextResponse("waited must be a small number\n", status_code=400)
    call_sid, ended, waited = params["CallSid"], int(text), int(waited_text)
    step = await services.fleet.after_stream(
        call_sid, ended, params.get("From", ""), params.get("To", ""),
        owner_stuck=waited >= MAX_WAITS,
    )  # fmt: skip
    counter.labels(step.action.name.lower()).inc()
    if step.action is AfterStream.RECONNECT:
        assert step.record is not None
        record = step.record
        log.info("call %s: stream %d ended, handing out stream %d", call_sid, ended, record.stream)
        return _xml(stream_twiml(services, call_sid, record.caller, record.called, record.stream))
    if step.action is AfterStream.HANG_UP:
        log.info("call %s: stream %d ended with the call", call_sid, ended)
        return _xml(hangup_twiml())
    if step.action is AfterStream.APOLOGY:
        if step.record is None or step.record.status is not CallStatus.ENDED:
            # Ended here (it cannot move again), not by a stream: reported here.
            await services.ledger.close(call_sid, Closing.ended(EndReason.MOVES_EXHAUSTED))
        log.warning("call %s: stream %d ended and the call cannot go on: apology", call_sid, ended)
        return _xml(apology_twiml(services.twiml))
    if step.action is AfterStream.WAIT:
        log.info(
            "call %s: stream %d ended, its server has not said how: asking again", call_sid, ended
        )
        return _xml(wait_twiml(services.settings.stream_ended_url(ended, waited + 1)))
    log.warning(
        "stream-ended request refused: call %s stream %d is not the current stream", call_sid, ended
    )
    return PlainTextResponse("not the call's ended stream\n", status_code=409)
