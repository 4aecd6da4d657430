"""Who may read the operator's views (stats, metrics, dashboard, softphone): they show
phone numbers, transcripts and internals, and the softphone starts Gemini sessions.

With ``OPERATOR_TOKEN`` set, a request needs ``Authorization: Bearer <token>``,
or Basic auth with the token as password, so a browser's own login prompt
opens the dashboard.

Without a token, "from loopback" alone is not who you are: a proxy or tunnel on the same
host (ngrok's agent, a forwarder) makes every remote client loopback, and a web page
whose name an attacker re-points at 127.0.0.1 (DNS rebinding) is loopback too. So the
request must also be addressed to a loopback name (``Host``), come from a loopback page
if it comes from a page at all (``Origin``), and carry no proxy headers. What that does
not stop, nothing without a token can: a program on this machine that says it is local.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import re

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

# Headers a proxy adds; a browser or a local script talking to the server directly never does.
PROXY_HEADERS = (
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-real-ip",
)

GUARD_WITHOUT_TOKEN = (
    "OPERATOR_TOKEN is not set: stats, metrics, the dashboard and the softphone answer only "
    "requests from this machine that are addressed to localhost, 127.0.0.1 or [::1], come "
    "from no other web page and carry no proxy headers. That keeps out other hosts, proxies "
    "and tunnels that add forwarding headers (ngrok, nginx), and web pages (DNS rebinding). "
    "It does not keep out programs on this machine, nor anyone whose bytes a plain TCP "
    "forwarder here passes on unchanged (socat, ssh -R): they can say 'localhost' too. Set "
    "OPERATOR_TOKEN before anyone else can reach the port."
)


def is_loopback(host: str | None) -> bool:
    """A loopback address or ``localhost`` (``Host`` names, ``--host``, client addresses)."""
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


_LOOPBACK_NAME = r"(?:localhost|127(?:\.[0-9]{1,3}){3}|\[::1\])(?::[0-9]{1,5})?"
_LOOPBACK_HOST = re.compile(_LOOPBACK_NAME, re.IGNORECASE)
_LOOPBACK_ORIGIN = re.compile(f"https?://{_LOOPBACK_NAME}", re.IGNORECASE)


def _loopback_refusal(request: Request) -> str | None:
    """Why a request without a token is not the local request the guard admits."""
    if not is_loopback(request.client.host if request.client else None):
        return "not from this machine"
    if any(header in request.headers for header in PROXY_HEADERS):
        return "came through a proxy"
    if not _LOOPBACK_HOST.fullmatch(request.headers.get("host", "")):
        return "not addressed to localhost"
    origin = request.headers.get("origin")
    if origin is not None and not _LOOPBACK_ORIGIN.fullmatch(origin):
        return "sent by another web page"
    return None


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
    refusal = _loopback_refusal(request)
    if refusal is None:
        return None
    return JSONResponse(
        {
            "error": f"without OPERATOR_TOKEN only local requests to localhost may see this "
            f"(this one was {refusal}); set OPERATOR_TOKEN to read it from elsewhere"
        },
        status_code=403,
    )
