"""The one urllib opener for requests to URLs an operator configured (HTTP tools, the
call-setup lookup, the call reports): http and https only (no ``ftp://``, ``file://`` or
``data:``), proxies from the environment kept, and no redirect followed. A 3xx is an
answer (an HTTP error), not a new place to send a body, its credentials or its
signature to."""

from __future__ import annotations

import urllib.request
from typing import Any


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _opener() -> urllib.request.OpenerDirector:
    opener = urllib.request.OpenerDirector()
    for handler in (
        urllib.request.ProxyHandler(),
        urllib.request.HTTPHandler(),
        urllib.request.HTTPSHandler(),
        urllib.request.HTTPDefaultErrorHandler(),
        urllib.request.HTTPErrorProcessor(),
        _RefuseRedirects(),
    ):
        opener.add_handler(handler)
    return opener


OPENER = _opener()
