"""``POST /api/call-status``: Twilio's status callbacks, for the log and the call reports.

Two kinds arrive here: the number's call status (``CallStatus``: ringing,
in-progress, completed, busy, failed, no-answer, canceled) and the stream's
(``StreamEvent``: stream-started, stream-stopped, stream-error). The stream
error is the only place Twilio says why a stream never reached us (a TLS or
handshake failure), so operators need it in the same log as the calls.

A call's final status (completed, busy, no-answer, failed, canceled) is also the only
word that a call no stream of ours ended is over (an outbound call nobody answered, a
call that hung up between two streams): its report is written from it
(``call/ledger.py``), and its place in admission given back.
"""

from __future__ import annotations

import logging
import re

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from ..call.report import FINAL_STATUSES
from ..runtime.services import Services
from .outbound import order_of
from .twilio_form import signed_twilio_form

log = logging.getLogger(__name__)

_WORD = re.compile(r"^[a-z-]{1,32}$")
MAX_ERROR_CHARS = 300


async def call_status(request: Request) -> Response:
    services: Services = request.app.state.services
    counter = services.metrics.status_callbacks
    params = await signed_twilio_form(request, services, counter, "status callback")
    if isinstance(params, Response):
        return params

    call_sid = params["CallSid"]
    stream_event = params.get("StreamEvent", "")
    status = stream_event or params.get("CallStatus", "")
    if not _WORD.match(status):
        counter.labels("bad_request").inc()
        return PlainTextResponse("missing CallStatus or StreamEvent\n", status_code=400)

    counter.labels(status).inc()
    data: dict[str, object] = {"call_sid": call_sid, "status": status}
    if stream_event:
        data["stream_sid"] = params.get("StreamSid", "")[:64]
        if error := params.get("StreamError", ""):
            data["error"] = error[:MAX_ERROR_CHARS]
    if (duration := params.get("CallDuration", "")).isdigit():
        data["duration_s"] = int(duration)
    if not stream_event and status in FINAL_STATUSES:
        if status != "completed":
            services.registry.unreserve(call_sid)  # an outbound call that never connected
            services.registry.unreserve(order_of(request) or "")
        duration = params.get("CallDuration", "")
        if (order := order_of(request)) is not None:
            await services.ledger.facts_of(call_sid, order)  # a call placed, its SID lost
        await services.ledger.twilio_ended(
            call_sid, status, int(duration) if duration.isdigit() else None
        )
    level = logging.WARNING if status in ("stream-error", "failed") else logging.INFO
    log.log(
        level,
        "twilio reports %s for call %s",
        status,
        call_sid,
        extra={"event": "twilio_status", "data": data},
    )
    return Response(status_code=204)
