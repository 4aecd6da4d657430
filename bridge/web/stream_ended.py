"""``POST /api/stream-ended?stream=N``: Twilio's ``<Connect action>`` request, made when
the call's stream ``N`` has ended while the call goes on.

Any server of the fleet may be asked. It answers from the call's shared record
(``call.shared_call.after_stream``): a fresh ``<Connect><Stream>`` with a new token for
the call's next stream (its server was deployed away or died, or Twilio's socket
dropped), the apology (Gemini failed, or the call cannot move again), or a hang-up (the
call ended by design). A request about a stream that is not the call's current one, or
whose stream is still live on a server that answers, is a replay: 409, as for a
replayed webhook.
"""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from ..call.shared_call import AfterStream
from ..runtime.services import Services
from ..twilio.twiml import apology_twiml, hangup_twiml
from .twilio_form import signed_twilio_form
from .webhook import stream_twiml

log = logging.getLogger(__name__)

MAX_STREAM_NUMBER = 1000


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
    call_sid, ended = params["CallSid"], int(text)
    step = await services.fleet.after_stream(
        call_sid, ended, params.get("From", ""), params.get("To", "")
    )
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
        log.warning("call %s: stream %d ended and the call cannot go on: apology", call_sid, ended)
        return _xml(apology_twiml(services.twiml))
    log.warning(
        "stream-ended request refused: call %s stream %d is %s",
        call_sid,
        ended,
        "still live" if step.action is AfterStream.WAIT else "not the current stream",
    )
    return PlainTextResponse("not the call's ended stream\n", status_code=409)
