"""What ``check`` and ``dev-phone`` ask Twilio's REST API about the account: do the
credentials work, and where does the number's voice webhook point.

The twilio client is synchronous (requests): callers on an event loop run these
in a thread with a timeout.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

REST_TIMEOUT_S = 10.0


class TwilioAccountError(Exception):
    """The REST API refused or failed; the message is safe to show (no credentials)."""


@dataclass(frozen=True, slots=True)
class NumberWebhook:
    sid: str
    voice_url: str
    voice_method: str
    status_callback: str
    status_callback_method: str


def rest_client(account_sid: str, auth_token: str, http_client: Any = None) -> Client:
    """``http_client`` replaces the twilio library's HTTP layer (tests)."""
    return Client(
        account_sid, auth_token, http_client=http_client or TwilioHttpClient(timeout=REST_TIMEOUT_S)
    )


def _refusal(exc: TwilioRestException, what: str) -> TwilioAccountError:
    if exc.status in (401, 403):
        return TwilioAccountError(
            f"Twilio refused the credentials (HTTP {exc.status}) when asked for {what}: check "
            "TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN (the console's Account Info)"
        )
    return TwilioAccountError(f"Twilio answered HTTP {exc.status} when asked for {what}")


def account_status(client: Client, account_sid: str) -> tuple[str, str]:
    """The account's (status, friendly name); raises TwilioAccountError."""
    try:
        account = client.api.v2010.accounts(account_sid).fetch()
    except TwilioRestException as exc:
        raise _refusal(exc, "the account") from None
    except OSError as exc:
        raise TwilioAccountError(f"cannot reach Twilio: {exc.__class__.__name__}") from None
    return account.status or "unknown", account.friendly_name or ""


def number_webhook(client: Client, number: str) -> NumberWebhook | None:
    """The number's voice webhook and status callback; None if the account has no such number."""
    try:
        found = client.incoming_phone_numbers.list(phone_number=number, limit=1)
    except TwilioRestException as exc:
        raise _refusal(exc, "the phone number") from None
    except OSError as exc:
        raise TwilioAccountError(f"cannot reach Twilio: {exc.__class__.__name__}") from None
    if not found:
        return None
    entry = found[0]
    return NumberWebhook(
        entry.sid,
        entry.voice_url or "",
        entry.voice_method or "POST",
        entry.status_callback or "",
        entry.status_callback_method or "POST",
    )
