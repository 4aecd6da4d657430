"""Who may reach the bridge: Twilio's request signatures and per-stream tokens.

Twilio signs its webhooks, but it does not reliably sign Media Streams
WebSocket upgrades. So the webhook (which *is* signed) mints a short-lived
token bound to the call, hands it to Twilio as a ``<Parameter>``, and the
stream must present it in its ``start`` event before any Gemini session opens.
Both are pure: whether a CallSid was answered before, or a token used, is the
shared store's to say (``call.fleet``), so that it holds across a fleet.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from twilio.request_validator import RequestValidator

TOKEN_TTL_S = 60.0  # Twilio opens the stream a second or two after the webhook answers


class SignatureCheck:
    """``X-Twilio-Signature`` against the URL Twilio used, rebuilt from PUBLIC_URL."""

    def __init__(self, auth_token: str, public_url: str) -> None:
        self._validator = RequestValidator(auth_token)
        self._public_url = public_url.rstrip("/")

    def url_for(self, path: str, query: str = "", *, websocket: bool = False) -> str:
        base = self._public_url
        if websocket:  # upgrades are signed over the ws(s):// URL
            base = "wss" + base[5:] if base.startswith("https") else "ws" + base[4:]
        return f"{base}{path}" + (f"?{query}" if query else "")

    def is_valid(self, url: str, params: Mapping[str, str] | None, signature: str | None) -> bool:
        if not signature:
            return False
        return bool(self._validator.validate(url, params or {}, signature))


@dataclass(frozen=True, slots=True)
class StreamGrant:
    """What a good token says: which call, which of its streams, minted where, until when.
    ``key`` names the token for its single use (the store spends it)."""

    call_sid: str
    stream: int
    minted_by: str
    expiry: int
    key: str


class StreamTokens:
    """HMAC tokens binding a stream to the call the signed webhook announced.

    A token is ``<expiry>.<stream>.<instance>.<mac>``; the MAC covers the CallSid, the
    caller and called numbers, the call's stream number (1 from the webhook, one more
    for each move), the instance that minted it and the expiry, so it cannot be moved to
    another call or stream or dressed up with other numbers. This checks what a token
    says; that it is used once, fleet-wide, is the shared store's to enforce.
    """

    def __init__(
        self,
        secret: str,
        instance: str = "local",
        ttl_s: float = TOKEN_TTL_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._key = hashlib.sha256(b"bridge-stream-token\0" + secret.encode()).digest()
        self._instance = instance
        self._ttl = ttl_s
        self._clock = clock

    def _mac(self, fields: tuple[str, ...]) -> str:
        digest = hmac.new(self._key, "\0".join(fields).encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def mint(self, call_sid: str, from_: str, to: str, stream: int = 1) -> str:
        expiry = str(int(self._clock() + self._ttl))
        head = (expiry, str(stream), self._instance)
        return ".".join((*head, self._mac((*head, call_sid, from_, to))))

    def check(self, token: str, call_sid: str, from_: str, to: str) -> StreamGrant | str:
        """The grant when the token is good for this call (and not expired), else the
        reason it is not (safe to log: it never quotes the token)."""
        parts = token.split(".")
        # compare_digest raises on non-ASCII text: such a token is malformed, not a crash.
        if not (token.isascii() and len(token) < 200 and len(parts) == 4):
            return "malformed stream token"
        expiry, stream, instance, mac = parts
        if not (expiry.isdigit() and stream.isdigit() and instance and mac):
            return "malformed stream token"
        if not hmac.compare_digest(mac, self._mac((expiry, stream, instance, call_sid, from_, to))):
            return "stream token does not match this call"
        if int(expiry) < self._clock():
            return "stream token expired"
        return StreamGrant(call_sid, int(stream), instance, int(expiry), mac)
