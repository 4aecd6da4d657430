"""``POST /api/recording-status``: Twilio's word that a call's recording is ready (or
that nothing was recorded). Its URL and duration go in the call's report, which waits
for them (``call/ledger.py``)."""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from ..call.facts import RecordingStatus
from ..runtime.services import Services
from .twilio_form import signed_twilio_form

log = logging.getLogger(__name__)

STATUSES = {
    "completed": RecordingStatus.COMPLETED,
    "absent": RecordingStatus.ABSENT,
    "failed": RecordingStatus.FAILED,
}
MAX_URL_CHARS = 300


async def recording_status(request: Request) -> Response:
    services: Services = request.app.state.services
    counter = services.metrics.recording_callbacks
    params = await signed_twilio_form(request, services, counter, "recording callback")
    if isinstance(params, Response):
        return params
    call_sid = params["CallSid"]
    status = STATUSES.get(params.get("RecordingStatus", ""))
    if status is None:  # in-progress, or one we did not ask for
        counter.labels("ignored").inc()
        return Response(status_code=204)
    url = params.get("RecordingUrl", "")
    if not url.startswith("https://") or len(url) > MAX_URL_CHARS:
        url = ""
    fields = {
        "recording_status": status.value,
        "recording_sid": params.get("RecordingSid", "")[:64],
        "recording_url": url,
    }
    if (duration := params.get("RecordingDuration", "")).isdigit():
        fields["recording_duration_s"] = duration
    if status is RecordingStatus.COMPLETED and not url:
        counter.labels("bad_request").inc()
        return PlainTextResponse("a completed recording needs its RecordingUrl\n", status_code=400)
    await services.ledger.note(call_sid, fields)
    counter.labels(status.value).inc()
    log.info("call %s: recording %s", call_sid, status.value)
    return Response(status_code=204)
