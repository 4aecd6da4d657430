"""How a receiver knows a request came from this bridge: an HMAC over its time and body.

Stripe's scheme, which receivers already know how to check::

    X-Bridge-Signature: t=1764780000,v1=5257a869e7ecebeda32affa62cdca3fa51cad7e7...(64 hex digits)

``v1`` is the hex HMAC-SHA256, keyed with WEBHOOK_SECRET, of the ASCII time ``t``
(Unix seconds), a dot, and the raw body bytes. The receiver recomputes it over the
body as it arrived (before parsing it), compares in constant time, and refuses a ``t``
more than five minutes from its own clock, so a captured request cannot be replayed
later. Each retry is signed afresh.
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-Bridge-Signature"
TOLERANCE_S = 300


def _digest(secret: str, timestamp: int, body: bytes) -> str:
    message = str(timestamp).encode("ascii") + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_header(secret: str, body: bytes, now: float) -> str:
    timestamp = int(now)
    return f"t={timestamp},v1={_digest(secret, timestamp, body)}"


def verify_signature(
    secret: str, header: str, body: bytes, now: float, tolerance_s: float = TOLERANCE_S
) -> bool:
    """What a receiver does (and the tests' receiver does, written apart from this)."""
    parts = dict(item.partition("=")[::2] for item in header.split(",") if "=" in item)
    stamp = parts.get("t", "")
    if not stamp.isdigit() or abs(now - int(stamp)) > tolerance_s:
        return False
    expected = _digest(secret, int(stamp), body)
    return hmac.compare_digest(expected, parts.get("v1", ""))
