"""Who may reach the bridge: Twilio's request signatures and per-stream tokens.

Twilio signs its webhooks, but it does not reliably sign Media Streams
WebSocket upgrades. So the webhook (which *is* signed) mints a short-lived
token bound to the call, hands it to Twilio as a ``<Parameter>``, and the
stream must present it in its ``start`` event before any Gemini session opens.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable, Mapping

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


class WebhookReplays:
    """CallSids already answered: a replayed webhook (same call, valid signature) is refused.

    Twilio requests the voice URL once per call, so a second request for a
    CallSid is a replay, which would otherwise mint a fresh stream token.
    """

    def __init__(self, remember: int = 100_000) -> None:
        self._seen: dict[str, None] = {}
        self._remember = remember

    def first_time(self, call_sid: str) -> bool:
        if call_sid in self._seen:
            return False
        self._seen[call_sid] = None
        if len(self._seen) > self._remember:
            del self._seen[next(iter(self._seen))]
        return True


class StreamTokens:
    """HMAC tokens binding a stream to the call the signed webhook announced.

    A token is ``<expiry>.<mac>``; the MAC covers the CallSid, the caller and
    called numbers and the expiry, so it cannot be moved to another call or
    dressed up with other numbers. Each token opens one stream (per process).
    """

    def __init__(
        self, secret: str, ttl_s: float = TOKEN_TTL_S, clock: Callable[[], float] = time.time
    ) -> None:
        self._key = hashlib.sha256(b"bridge-stream-token\0" + secret.encode()).digest()
        self._ttl = ttl_s
        self._clock = clock
        self._used: dict[str, float] = {}

    def _mac(self, expiry: int, call_sid: str, from_: str, to: str) -> str:
        message = "\0".join((str(expiry), call_sid, from_, to)).encode()
        digest = hmac.new(self._key, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def mint(self, call_sid: str, from_: str, to: str) -> str:
        expiry = int(self._clock() + self._ttl)
        return f"{expiry}.{self._mac(expiry, call_sid, from_, to)}"

    def verify(self, token: str, call_sid: str, from_: str, to: str) -> str | None:
        """None when the token is good (and now spent), else the reason it is not."""
        expiry_text, _, mac = token.partition(".")
        # compare_digest raises on non-ASCII text: such a token is malformed, not a crash.
        if not (token.isascii() and expiry_text.isdigit() and mac and len(token) < 200):
            return "malformed stream token"
        expiry = int(expiry_text)
        if not hmac.compare_digest(mac, self._mac(expiry, call_sid, from_, to)):
            return "stream token does not match this call"
        now = self._clock()
        if expiry < now:
            return "stream token expired"
        self._used = {t: exp for t, exp in self._used.items() if exp >= now}
        if token in self._used:
            return "stream token already used"
        self._used[token] = expiry
        return None
