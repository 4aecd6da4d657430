"""``GET /dashboard``: the operator's live view, one self-contained page (no CDN).

The page holds no data itself; it polls ``/api/calls/stats`` with the same
credentials, so it is guarded the same way (a browser gets a login prompt).
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from .operator_auth import operator_denial

PAGE = (Path(__file__).parent / "pages" / "dashboard.html").read_text(encoding="utf-8")
# The page loads nothing from elsewhere: say so to the browser too.
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'unsafe-inline'; "
    "style-src 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}


async def dashboard(request: Request) -> Response:
    if (denied := operator_denial(request, browser=True)) is not None:
        return denied
    return HTMLResponse(PAGE, headers=HEADERS)
