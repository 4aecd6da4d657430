"""An operator's webhook endpoints, for the bridge to deliver to: real HTTP on loopback.

``async with WebhookReceiver(secret="...") as rx:`` serves, on 127.0.0.1 (an
ephemeral port) in the test's event loop:

* ``rx.url("/report")`` (any path under ``/report``): every POST is kept as a
  ``Delivery``; a bad signature gets 401, ``rx.fail_first = N`` answers 500 to the
  first N well-signed ones, ``rx.delay_s`` holds every answer back, and
  ``await rx.wait_for(n)`` waits for n deliveries answered 2xx;
* ``rx.url("/setup")``: the bridge's pre-call webhook (JSON ``{"call_sid", "from",
  "to"}``), kept in ``rx.setup_requests``, answered with ``rx.setup_answer`` and
  ``rx.setup_status`` after ``rx.setup_delay_s``.

Signatures are checked here on their own terms, not with the bridge's code: the
header ``X-Bridge-Signature: t=<unix seconds>,v1=<hex>``, where ``v1`` is
HMAC-SHA256(secret, ``f"{t}."`` + raw body) in hex; valid when one ``v1`` matches
(constant-time) and ``t`` is within 300 s of now. ``sign()`` makes one.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .harness import _bound_socket, serve_app

__all__ = ["SIGNATURE_HEADER", "Delivery", "WebhookReceiver", "sign", "signature_valid"]

SIGNATURE_HEADER = "X-Bridge-Signature"
TOLERANCE_S = 300.0


def _key(secret: str | bytes) -> bytes:
    return secret.encode() if isinstance(secret, str) else secret


def sign(secret: str | bytes, body: bytes, t: int | None = None) -> str:
    """The ``X-Bridge-Signature`` value for ``body`` at unix time ``t`` (default: now)."""
    stamp = int(time.time()) if t is None else t
    mac = hmac.new(_key(secret), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={stamp},v1={mac}"


def signature_valid(
    secret: str | bytes,
    body: bytes,
    header: str | None,
    *,
    now: float | None = None,
    tolerance_s: float = TOLERANCE_S,
) -> bool:
    """Whether ``header`` signs ``body`` with ``secret``, and recently enough."""
    if not header:
        return False
    stamp: int | None = None
    macs: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t":
            try:
                stamp = int(value)
            except ValueError:
                return False
        elif name == "v1":
            macs.append(value)
    if stamp is None or not macs:
        return False
    if abs((time.time() if now is None else now) - stamp) > tolerance_s:
        return False
    expected = hmac.new(_key(secret), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    found = False
    for mac in macs:  # every candidate compared, in constant time
        found |= hmac.compare_digest(expected.encode(), mac.encode())
    return found


@dataclass
class Delivery:
    """One request the receiver got, and how it answered."""

    path: str
    headers: dict[str, str]  # lower-cased names
    body: bytes
    json: Any  # the body parsed, or None when it is not JSON
    signature_valid: bool
    status: int  # what the receiver answered
    at: float  # monotonic arrival time


class WebhookReceiver:
    def __init__(self, secret: str | bytes = "", *, tolerance_s: float = TOLERANCE_S) -> None:
        self.secret = secret
        self.tolerance_s = tolerance_s
        self.fail_first = 0  # answer 500 to this many well-signed reports
        self.delay_s = 0.0  # hold every report's answer back this long
        self.setup_answer: Any = {}
        self.setup_status = 200
        self.setup_delay_s = 0.0
        self.deliveries: list[Delivery] = []  # /report…, every one, failed ones too
        self.setup_requests: list[Delivery] = []  # /setup
        self.failed = 0  # reports answered 500 on purpose so far
        self.base_url = ""
        self._serving: contextlib.AbstractAsyncContextManager[Any] | None = None

    def url(self, path: str = "/report") -> str:
        if not self.base_url:
            raise RuntimeError("the receiver is not serving: use it as `async with`")
        return self.base_url + (path if path.startswith("/") else "/" + path)

    @property
    def delivered(self) -> list[Delivery]:
        """The reports answered 2xx."""
        return [d for d in self.deliveries if 200 <= d.status < 300]

    async def wait_for(self, n: int, timeout: float = 10.0) -> list[Delivery]:
        """Wait until ``n`` reports have been answered 2xx; returns them."""
        async with asyncio.timeout(timeout):
            while len(self.delivered) < n:
                await asyncio.sleep(0.01)
        return self.delivered

    async def wait_for_setup(self, n: int = 1, timeout: float = 10.0) -> list[Delivery]:
        async with asyncio.timeout(timeout):
            while len(self.setup_requests) < n:
                await asyncio.sleep(0.01)
        return self.setup_requests

    # --- the server -------------------------------------------------------------------------

    async def __aenter__(self) -> WebhookReceiver:
        app = Starlette(
            routes=[
                Route("/report", self._report, methods=["POST"]),
                Route("/report/{rest:path}", self._report, methods=["POST"]),
                Route("/setup", self._setup, methods=["POST"]),
            ]
        )
        sock = _bound_socket()
        self._serving = serve_app(app, sock)
        await self._serving.__aenter__()
        self.base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        serving, self._serving = self._serving, None
        if serving is not None:
            await serving.__aexit__(None, None, None)

    async def _received(self, request: Request) -> Delivery:
        arrived = time.monotonic()
        body = await request.body()
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        valid = signature_valid(
            self.secret,
            body,
            request.headers.get(SIGNATURE_HEADER),
            tolerance_s=self.tolerance_s,
        )
        headers = {name.lower(): value for name, value in request.headers.items()}
        return Delivery(request.url.path, headers, body, parsed, valid, 0, arrived)

    async def _report(self, request: Request) -> Response:
        delivery = await self._received(request)
        if not delivery.signature_valid:
            delivery.status = 401
        elif self.failed < self.fail_first:
            self.failed += 1
            delivery.status = 500
        else:
            delivery.status = 200
        if self.delay_s > 0:
            await asyncio.sleep(self.delay_s)
        self.deliveries.append(delivery)
        answers = {401: {"error": "invalid signature"}, 500: {"error": "failing on purpose"}}
        return JSONResponse(answers.get(delivery.status, {"ok": True}), delivery.status)

    async def _setup(self, request: Request) -> Response:
        delivery = await self._received(request)
        if not delivery.signature_valid:
            delivery.status = 401
            self.setup_requests.append(delivery)
            return JSONResponse({"error": "invalid signature"}, 401)
        delivery.status = self.setup_status
        if self.setup_delay_s > 0:
            await asyncio.sleep(self.setup_delay_s)
        self.setup_requests.append(delivery)
        return JSONResponse(self.setup_answer, delivery.status)
