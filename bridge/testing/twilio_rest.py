"""Twilio's REST API as the simulated callers see it, through the twilio client's HTTP hook.

Pass ``TwilioRestFake(...)`` as the twilio library's ``http_client``: every
request is recorded, and a call update does to the simulated call what Twilio
would do to the real one (new TwiML or ``status=completed`` ends the stream:
``stop``, then close).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from dataclasses import dataclass
from typing import Any

from twilio.http import HttpClient
from twilio.http.response import Response

from .caller import SimulatedCaller

CALL_UPDATE = re.compile(r"/Accounts/(AC\w+)/Calls/(CA\w+)\.json$")


@dataclass
class RestRequest:
    method: str
    url: str
    data: dict[str, Any]


class TwilioRestFake(HttpClient):
    def __init__(self, loop: asyncio.AbstractEventLoop, status: int = 200) -> None:
        super().__init__(logger=logging.getLogger(__name__), is_async=False)
        self.requests: list[RestRequest] = []
        self.status = status  # e.g. 500 to test failures
        self._loop = loop
        self._callers: dict[str, SimulatedCaller] = {}

    def connect(self, caller: SimulatedCaller) -> None:
        self._callers[caller.call_sid] = caller

    def request(  # type: ignore[override]
        self,
        method: str,
        uri: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        self.requests.append(RestRequest(method, uri, dict(data or {})))
        match = CALL_UPDATE.search(uri)
        if match is None or self.status >= 400:
            status = self.status if match else 404
            body = {"code": 20000 + status, "message": "fake", "status": status}
            return Response(status, json.dumps(body))
        account, call_sid = match.groups()
        caller = self._callers.get(call_sid)
        if caller is not None and method == "POST":
            # Twilio replaces the call's TwiML or ends it: either way the stream stops.
            asyncio.run_coroutine_threadsafe(caller.hang_up(), self._loop)
        status = (data or {}).get("Status", "in-progress")
        body = {"sid": call_sid, "account_sid": account, "status": status}
        return Response(200, json.dumps(body))
