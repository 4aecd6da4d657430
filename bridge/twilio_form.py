"""A request Twilio signed about one of our calls (the voice webhook, status callbacks):
size cap, form body, the signature over the public URL, the CallSid and the account,
checked the same way for every such route."""

from __future__ import annotations

import logging

from prometheus_client import Counter
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from .services import Services
from .twilio.media_streams import is_valid_sid

log = logging.getLogger(__name__)

MAX_FORM_BYTES = 64 * 1024
FORM = "application/x-www-form-urlencoded"


async def signed_twilio_form(
    request: Request, services: Services, counter: Counter, what: str
) -> dict[str, str] | Response:
    """The form's fields (with a well-formed ``CallSid``), or the response that refuses
    the request (counted by reason)."""
    length = request.headers.get("content-length") or "0"
    if not length.isdigit() or int(length) > MAX_FORM_BYTES:
        counter.labels("too_large").inc()
        return PlainTextResponse("request too large\n", status_code=413)
    is_form = request.headers.get("content-type", "").startswith(FORM)
    params: dict[str, str] = {}
    if is_form:
        form = await request.form()
        params = {k: v for k, v in form.multi_items() if isinstance(v, str)}

    # The URL Twilio signed is the public one: behind ngrok or a proxy the Host differs.
    url = services.signatures.url_for(request.url.path, request.url.query)
    if not services.signatures.is_valid(url, params, request.headers.get("x-twilio-signature")):
        counter.labels("forbidden").inc()
        log.warning("%s refused: missing or bad X-Twilio-Signature", what)
        return PlainTextResponse("forbidden\n", status_code=403)
    if not is_form:
        counter.labels("bad_request").inc()
        return PlainTextResponse(f"expected a form-encoded Twilio {what}\n", status_code=415)
    call_sid = params.get("CallSid", "")
    if not is_valid_sid(call_sid, "CA"):
        counter.labels("bad_request").inc()
        return PlainTextResponse("missing or malformed CallSid\n", status_code=400)
    account = services.settings.twilio_account_sid
    if account and params.get("AccountSid") != account:
        counter.labels("forbidden").inc()
        log.warning("%s refused: call %s is for another Twilio account", what, call_sid)
        return PlainTextResponse("forbidden\n", status_code=403)
    return params
