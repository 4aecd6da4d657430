"""Who may read the operator's views (stats, metrics, dashboard): they show phone
numbers, transcripts and internals.

With ``OPERATOR_TOKEN`` set, a request needs ``Authorization: Bearer <token>``,
or Basic auth with the token as password, so a browser's own login prompt
opens the dashboard. Without a token, loopback clients only.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress

from starlette.requests import Request
from starlette.responses import JSONResponse, Response


def _is_loopback(host: str | None) -> bool:
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _given_token(authorization: str) -> str | None:
    scheme, _, value = authorization.partition(" ")
    scheme, value = scheme.lower(), value.strip()
    if scheme == "bearer":
        return value
    if scheme == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2]
    return None


def operator_denial(request: Request, *, browser: bool = False) -> Response | None:
    """``None`` when the request may see operator data; else the response that refuses it.

    ``browser`` asks for a Basic challenge, which makes a browser prompt for it.
    """
    token: str | None = request.app.state.services.settings.operator_token
    if token:
        given = _given_token(request.headers.get("authorization", ""))
        if given is not None and hmac.compare_digest(given.encode(), token.encode()):
            return None
        challenge = 'Basic realm="bridge operator"' if browser else "Bearer"
        return JSONResponse(
            {"error": "operator token required"},
            status_code=401,
            headers={"WWW-Authenticate": challenge},
        )
    if _is_loopback(request.client.host if request.client else None):
        return None
    return JSONResponse(
        {"error": "set OPERATOR_TOKEN to read this from another host"}, status_code=403
    )
