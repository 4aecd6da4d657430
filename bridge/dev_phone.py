"""``gemini-phone-bridge dev-phone``: call the assistant from a real phone, served from
your laptop.

One command opens an ngrok tunnel to the local server (the ngrok Python SDK
ships its agent in the wheel), sets PUBLIC_URL to it, points your Twilio
number's voice webhook and status callback at the tunnel through Twilio's REST
API, serves, and puts the number's previous settings back on exit.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.config import Config
from twilio.rest import Client

from .config import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NumberWebhook:
    sid: str
    voice_url: str
    voice_method: str
    status_callback: str
    status_callback_method: str


class TwilioNumber:
    """One incoming phone number's voice webhook and status callback: point them, then put
    them back."""

    def __init__(self, account_sid: str, auth_token: str, number: str, http_client: Any = None):
        self._client = Client(account_sid, auth_token, http_client=http_client)
        self._number = number
        self._previous: NumberWebhook | None = None

    def point_at(self, public_url: str) -> NumberWebhook:
        found = self._client.incoming_phone_numbers.list(phone_number=self._number, limit=1)
        if not found:
            raise ConfigError("TWILIO_PHONE_NUMBER", f"{self._number} is not in this account")
        number = found[0]
        self._previous = NumberWebhook(
            number.sid,
            number.voice_url or "",
            number.voice_method or "POST",
            number.status_callback or "",
            number.status_callback_method or "POST",
        )
        self._client.incoming_phone_numbers(number.sid).update(
            voice_url=f"{public_url}/api/inbound-call",
            voice_method="POST",
            status_callback=f"{public_url}/api/call-status",
            status_callback_method="POST",
        )
        return self._previous

    def restore(self) -> None:
        if self._previous is None:
            return
        previous, self._previous = self._previous, None
        self._client.incoming_phone_numbers(previous.sid).update(
            voice_url=previous.voice_url,
            voice_method=previous.voice_method,
            status_callback=previous.status_callback,
            status_callback_method=previous.status_callback_method,
        )


def required(name: str) -> str:
    """From the environment or ./.env, as every other setting."""
    config = Config(".env" if Path(".env").is_file() else None)
    value = str(config(name, default="")).strip()
    if not value:
        raise ConfigError(name, "not set (needed by gemini-phone-bridge dev-phone)")
    return value


def run(host: str, port: int) -> int:
    """Tunnel, point the number, serve until Ctrl-C, restore the number."""
    try:
        token = required("NGROK_AUTHTOKEN")
        account, auth = required("TWILIO_ACCOUNT_SID"), required("TWILIO_AUTH_TOKEN")
        number = TwilioNumber(account, auth, required("TWILIO_PHONE_NUMBER"))
    except ConfigError as exc:
        print(f"gemini-phone-bridge dev-phone: {exc}")
        return 2
    import ngrok  # optional dependency: pip install -e '.[dev-phone]'

    listener = ngrok.forward(f"{host}:{port}", authtoken=token, proto="http")
    public_url = listener.url()
    os.environ["PUBLIC_URL"] = public_url
    number.point_at(public_url)
    print(f"Call your Twilio number now: it reaches {public_url}/api/inbound-call", flush=True)
    try:
        from .cli import main

        return main(["serve", "--host", host, "--port", str(port)])
    finally:
        number.restore()
        ngrok.disconnect(public_url)
        print("Restored the number's previous webhook.", flush=True)
