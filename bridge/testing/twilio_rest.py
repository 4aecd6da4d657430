"""Twilio's REST API as the simulated callers see it, through the twilio client's HTTP hook.

Pass ``TwilioRestFake(...)`` as the twilio library's ``http_client``: every
request is recorded and answered as Twilio answers it, in the JSON shapes the
twilio library reads:

* a call update does to the simulated call what Twilio would do to the real
  one (new TwiML or ``status=completed`` ends the stream: ``stop``, then close);
* the account fetch answers the account, or 401 (Twilio's error 20003) when the
  client's credentials are not the account's;
* the incoming-phone-numbers list (``PhoneNumber`` filter) and a number's update
  read and change the numbers given, as ``dev-phone`` and ``check`` use them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from twilio.http import HttpClient
from twilio.http.response import Response

from .caller import SimulatedCaller

API = "https://api.twilio.com/2010-04-01"
ACCOUNT = re.compile(r"/Accounts/(AC\w+)\.json$")
CALL_UPDATE = re.compile(r"/Accounts/(AC\w+)/Calls/(CA\w+)\.json$")
NUMBERS = re.compile(r"/Accounts/(AC\w+)/IncomingPhoneNumbers\.json$")
NUMBER = re.compile(r"/Accounts/(AC\w+)/IncomingPhoneNumbers/(PN\w+)\.json$")
NUMBER_FIELDS = {  # form field → resource field, as the twilio client sends them
    "VoiceUrl": "voice_url",
    "VoiceMethod": "voice_method",
    "StatusCallback": "status_callback",
    "StatusCallbackMethod": "status_callback_method",
}


@dataclass
class RestRequest:
    method: str
    url: str
    data: dict[str, Any]
    params: dict[str, Any] = field(default_factory=dict)


def _error(status: int, code: int, message: str) -> Response:
    body = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return Response(status, json.dumps(body))


@dataclass
class IncomingNumber:
    """One of the account's phone numbers, as the IncomingPhoneNumbers resource has it."""

    sid: str
    phone_number: str
    voice_url: str = ""
    voice_method: str = "POST"
    status_callback: str = ""
    status_callback_method: str = "POST"

    def resource(self, account_sid: str) -> dict[str, Any]:
        return {
            "sid": self.sid,
            "account_sid": account_sid,
            "phone_number": self.phone_number,
            "friendly_name": self.phone_number,
            "voice_url": self.voice_url,
            "voice_method": self.voice_method,
            "status_callback": self.status_callback,
            "status_callback_method": self.status_callback_method,
            "uri": f"/2010-04-01/Accounts/{account_sid}/IncomingPhoneNumbers/{self.sid}.json",
        }


class TwilioRestFake(HttpClient):  # type: ignore[misc]  # the twilio library has no types
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop | None = None,
        status: int = 200,
        *,
        credentials: tuple[str, str] | None = None,
        numbers: list[IncomingNumber] | None = None,
        account_status: str = "active",
    ) -> None:
        """``credentials`` (account SID, auth token): requests with others get 401."""
        super().__init__(logger=logging.getLogger(__name__), is_async=False)
        self.requests: list[RestRequest] = []
        self.status = status  # e.g. 500 to test failures of call updates
        self.credentials = credentials
        self.numbers = {n.sid: n for n in numbers or []}
        self.account_status = account_status
        self._loop = loop
        self._callers: dict[str, SimulatedCaller] = {}

    def connect(self, caller: SimulatedCaller) -> None:
        self._callers[caller.call_sid] = caller

    def request(
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
        self.requests.append(RestRequest(method, uri, dict(data or {}), dict(params or {})))
        if self.credentials is not None and tuple(auth or ()) != self.credentials:
            return _error(401, 20003, "Authenticate")
        form, query = dict(data or {}), dict(params or {})
        if match := CALL_UPDATE.search(uri):
            return self._update_call(method, form, *match.groups())
        if (match := ACCOUNT.search(uri)) and method == "GET":
            return self._account(match.group(1))
        if (match := NUMBERS.search(uri)) and method == "GET":
            return self._list_numbers(match.group(1), query)
        if (match := NUMBER.search(uri)) and method == "POST":
            return self._update_number(match.group(1), match.group(2), form)
        return _error(404, 20404, f"The requested resource {uri} was not found")

    def _update_call(self, method: str, form: dict[str, Any], account: str, sid: str) -> Response:
        if self.status >= 400:
            return _error(self.status, 20000 + self.status, "fake")
        caller = self._callers.get(sid)
        if caller is not None and method == "POST" and self._loop is not None:
            # Twilio replaces the call's TwiML or ends it: either way the stream stops.
            asyncio.run_coroutine_threadsafe(caller.hang_up(), self._loop)
        status = form.get("Status", "in-progress")
        return Response(200, json.dumps({"sid": sid, "account_sid": account, "status": status}))

    def _account(self, sid: str) -> Response:
        if self.credentials is not None and sid != self.credentials[0]:
            return _error(404, 20404, f"The requested resource /Accounts/{sid}.json was not found")
        body = {
            "sid": sid,
            "friendly_name": "My first Twilio account",
            "status": self.account_status,
            "type": "Full",
            "owner_account_sid": sid,
            "uri": f"/2010-04-01/Accounts/{sid}.json",
        }
        return Response(200, json.dumps(body))

    def _list_numbers(self, account: str, query: dict[str, Any]) -> Response:
        wanted = query.get("PhoneNumber")
        found = [n for n in self.numbers.values() if wanted in (None, n.phone_number)]
        size = int(query.get("PageSize", 50))
        path = f"/2010-04-01/Accounts/{account}/IncomingPhoneNumbers.json"
        first = f"{path}?{urllib.parse.urlencode({**query, 'Page': 0})}"
        body = {
            "incoming_phone_numbers": [n.resource(account) for n in found[:size]],
            "first_page_uri": first,
            "next_page_uri": None,
            "previous_page_uri": None,
            "page": 0,
            "page_size": size,
            "start": 0,
            "end": max(0, min(len(found), size) - 1),
            "uri": first,
        }
        return Response(200, json.dumps(body))

    def _update_number(self, account: str, sid: str, form: dict[str, Any]) -> Response:
        number = self.numbers.get(sid)
        if number is None:
            return _error(404, 20404, "The requested resource was not found")
        for name, attribute in NUMBER_FIELDS.items():
            if name in form:
                setattr(number, attribute, str(form[name]))
        return Response(200, json.dumps(number.resource(account)))
