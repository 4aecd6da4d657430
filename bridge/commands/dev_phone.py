"""``gemini-phone-bridge dev-phone``: call the assistant from a real phone, served from
your laptop.

One command opens an ngrok tunnel to the local server (the ngrok Python SDK
ships its agent in the wheel), sets PUBLIC_URL to it, points your Twilio
number's voice webhook and status callback at the tunnel through Twilio's REST
API, serves, and puts the number's previous settings back on exit. Whatever
stops it before serving (a missing setting, the SDK not installed, a tunnel
that cannot connect, Twilio refusing) is said in one line with what to do.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any

from twilio.base.exceptions import TwilioRestException

from ..config import ConfigError, read_environment
from ..twilio.account import NumberWebhook, TwilioAccountError, number_webhook, rest_client

log = logging.getLogger(__name__)

PROG = "gemini-phone-bridge dev-phone"
NGROK_ERROR_CODE = re.compile(r"ERR_NGROK_\d+")


class DevPhoneError(Exception):
    """Why dev-phone cannot go on, in one line that says what to do."""


class TwilioNumber:
    """One incoming phone number's voice webhook and status callback: point them, then put
    them back."""

    def __init__(self, account_sid: str, auth_token: str, number: str, http_client: Any = None):
        self._client = rest_client(account_sid, auth_token, http_client)
        self._number = number
        self._previous: NumberWebhook | None = None

    def point_at(self, public_url: str) -> NumberWebhook:
        found = number_webhook(self._client, self._number)
        if found is None:
            raise ConfigError("TWILIO_PHONE_NUMBER", f"{self._number} is not in this account")
        self._previous = found
        self._update(
            found.sid,
            f"{public_url}/api/inbound-call",
            "POST",
            f"{public_url}/api/call-status",
            "POST",
        )
        return found

    def restore(self) -> None:
        if self._previous is None:
            return
        previous, self._previous = self._previous, None
        self._update(
            previous.sid,
            previous.voice_url,
            previous.voice_method,
            previous.status_callback,
            previous.status_callback_method,
        )

    def _update(
        self, sid: str, voice: str, voice_method: str, status: str, status_method: str
    ) -> None:
        try:
            self._client.incoming_phone_numbers(sid).update(
                voice_url=voice,
                voice_method=voice_method,
                status_callback=status,
                status_callback_method=status_method,
            )
        except TwilioRestException as exc:
            raise TwilioAccountError(
                f"Twilio refused to change {self._number}'s webhook (HTTP {exc.status})"
            ) from None


def required(name: str) -> str:
    """From the environment or ./.env, as every other setting."""
    value = read_environment().get(name, "").strip()
    if not value:
        raise ConfigError(name, f"not set (needed by {PROG})")
    return value


def open_tunnel(address: str, authtoken: str) -> tuple[str, Any]:
    """An ngrok http tunnel to ``address``: (its https URL, the module to close it with)."""
    try:
        import ngrok  # the optional [dev-phone] extra
    except ImportError:
        raise DevPhoneError(
            "the ngrok SDK is not installed: run ./scripts/dev-phone (it installs it), or "
            "pip install 'gemini-phone-bridge[dev-phone]'"
        ) from None
    try:
        listener = ngrok.forward(address, authtoken=authtoken, proto="http")
    except (ValueError, OSError) as exc:
        message = str(exc).replace(authtoken, "[redacted]")
        code = NGROK_ERROR_CODE.search(message)
        first = next((line.strip() for line in message.splitlines() if line.strip()), "")
        raise DevPhoneError(
            f"ngrok could not open a tunnel ({code.group(0) if code else first[:120]}): check "
            "NGROK_AUTHTOKEN (dashboard.ngrok.com, Your Authtoken) and that this machine "
            "reaches the internet"
        ) from None
    return listener.url(), ngrok


def run(host: str, port: int) -> int:
    """Tunnel, point the number, serve until Ctrl-C, restore the number."""
    try:
        token = required("NGROK_AUTHTOKEN")
        account, auth = required("TWILIO_ACCOUNT_SID"), required("TWILIO_AUTH_TOKEN")
        number = TwilioNumber(account, auth, required("TWILIO_PHONE_NUMBER"))
        public_url, ngrok = open_tunnel(f"{host}:{port}", token)
    except (ConfigError, DevPhoneError) as exc:
        print(f"{PROG}: {exc}")
        return 2
    try:
        number.point_at(public_url)
    except (ConfigError, TwilioAccountError) as exc:
        ngrok.disconnect(public_url)
        print(f"{PROG}: {exc}")
        return 2
    os.environ["PUBLIC_URL"] = public_url
    print(f"Call your Twilio number now: it reaches {public_url}/api/inbound-call", flush=True)
    try:
        from .serve import serve

        return serve(host, port)
    finally:
        number.restore()
        ngrok.disconnect(public_url)
        print("Restored the number's previous webhook.", flush=True)
