"""A request Twilio signed about one of our calls (the voice webhook, status callbacks):
size cap, form body, the signature over the public URL, the CallSid and the account,
checked the same way for every such route."""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import parse_qsl

from prometheus_client import Counter
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from ..observability.logs import tag_call
from ..runtime.services import Services
from ..twilio.media_streams import is_valid_sid

log = logging.getLogger(__name__)

MAX_FORM_BYTES = 64 * 1024
MAX_FORM_FIELDS = 200  # Twilio's webhook has about 25
BODY_TIMEOUT_S = 5.0  # Twilio sends its few hundred bytes at once
FORM = "application/x-www-form-urlencoded"


class BodyRefused(Exception):
    """The body was not read whole: ``status`` for the answer, ``reason`` for the metric."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status, self.reason = status, reason


async def read_capped_body(request: Request, limit: int, timeout_s: float) -> bytes:
    """The whole body, read before anything else looks at it, however it arrives: reading
    stops at ``limit`` bytes (a ``Content-Length`` over it is refused unread, a chunked
    body where it passes the limit) and after ``timeout_s``. Nothing past the cap is kept."""
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > limit):
        raise BodyRefused(413, "too_large", "request too large")
    body = bytearray()
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.stream():
                body += chunk
                if len(body) > limit:
                    raise BodyRefused(413, "too_large", "request too large")
    except TimeoutError:
        raise BodyRefused(408, "too_slow", "request body too slow") from None
    return bytes(body)


async def signed_twilio_form(
    request: Request, services: Services, counter: Counter, what: str
) -> dict[str, str] | Response:
    """The form's fields (with a well-formed ``CallSid``), or the response that refuses
    the request (counted by reason)."""
    try:
        body = await read_capped_body(request, MAX_FORM_BYTES, BODY_TIMEOUT_S)
    except BodyRefused as refused:
        counter.labels(refused.reason).inc()
        # The rest of the body is still coming: hang up, or uvicorn would read (and drop)
        # it for as long as the sender keeps sending.
        return PlainTextResponse(
            f"{refused}\n", status_code=refused.status, headers={"Connection": "close"}
        )
    is_form = request.headers.get("content-type", "").startswith(FORM)
    params: dict[str, str] = {}
    if is_form:
        try:
            fields = parse_qsl(
                body.decode("utf-8", "replace"),
                keep_blank_values=True,
                max_num_fields=MAX_FORM_FIELDS,
            )
        except ValueError:  # too many fields
            counter.labels("bad_request").inc()
            return PlainTextResponse("too many form fields\n", status_code=400)
        params = dict(fields)

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
