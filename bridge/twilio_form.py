"""A request Twilio signed about one of our calls (the voice webhook, status callbacks):
size cap, form body, the signature over the public URL, the CallSid and the account,
checked the same way for every such route."""

from __future__ import annotations

import logging

from prometheus_client import Counter
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from .logs import tag_call
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

    if is_valid_sid(params.get("CallSid", ""), "CA"):
        tag_call(params["CallSid"])  # this request's lines (and pre-warming's) name the call
    # The URL Twilio signed is the public one: behind ngrok or a proxy the Host differs.
    url = services.signatures.url_for(request.url.path, request.url.query)
    signature = request.headers.get("x-twilio-signature")
    if not services.signatures.is_valid(url, params, signature):
        counter.labels("forbidden").inc()
        _log_refused_signature(what, url, signature, request, services)
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


def _log_refused_signature(
    what: str, url: str, signature: str | None, request: Request, services: Services
) -> None:
    """Say what was checked and what to look at: a wrong PUBLIC_URL and a wrong auth
    token are the most common Twilio mistakes, and they need different fixes."""
    if not signature:
        log.warning(
            "%s refused: no X-Twilio-Signature header (not a request from Twilio, or a proxy "
            "dropped the header)",
            what,
        )
        return
    host = request.headers.get("host", "")
    expected = services.settings.public_host
    if host and host.lower() != expected.lower():
        hint = (
            f"the request came to Host {host}, not {expected}: if Twilio calls {host}, "
            "set PUBLIC_URL to that URL"
        )
    else:
        hint = (
            "check TWILIO_AUTH_TOKEN (the auth token of the account that owns the number) and "
            "that the number's webhook URL is exactly this one, scheme and port included"
        )
    log.warning(
        "%s refused: X-Twilio-Signature does not match %s; %s",
        what,
        url,
        hint,
    )
