"""Twilio's REST API as the simulated callers see it, through the twilio client's HTTP hook.

Pass ``TwilioRestFake(...)`` as the twilio library's ``http_client``: every
request is recorded and answered as Twilio answers it, in the JSON shapes the
twilio library reads:

* a call update does to the simulated call what Twilio would do to the real
  one (new TwiML or ``status=completed`` ends the stream: ``stop``, then close);
* the account fetch answers the account, or 401 (Twilio's error 20003) when the
  client's credentials are not the account's;
* the incoming-phone-numbers list (``PhoneNumber`` filter) and a number's update
  read and change the numbers given, as ``dev-phone`` and ``check`` use them;
* ``calls.create`` places a call: it is validated as Twilio validates it (400 and
  Twilio's error code), answered 201 ``queued``, then played out on the event loop by
  the ``PhoneNetwork`` according to ``rest.callees[to]`` (status callbacks, the
  webhook, a real Media Stream, async AMD), and kept in ``rest.placed[sid]``;
* ``calls(sid).recordings.create`` starts a recording of a call in progress (else
  Twilio's 21220) and posts its status callback after the call has ended.

Everything it posts is signed with ``X-Twilio-Signature`` (the ``auth_token`` given,
else the credentials', else the password the twilio client authenticated with).
Use it as ``async with TwilioRestFake(...) as rest:`` (or call ``aclose()``) so every
task it started is cancelled and awaited.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from twilio.http import HttpClient
from twilio.http.response import Response

from .caller import SimulatedCaller, rfc2822_now
from .phone_network import (
    Callee,
    CalleeKind,
    PhoneNetwork,
    PlacedCall,
    Recording,
    form_list,
    form_text,
    new_sid,
)

__all__ = [
    "Callee",
    "CalleeKind",
    "IncomingNumber",
    "PlacedCall",
    "Recording",
    "RestRequest",
    "TwilioRestFake",
]

API = "https://api.twilio.com/2010-04-01"
ACCOUNT = re.compile(r"/Accounts/(AC\w+)\.json$")
CALLS = re.compile(r"/Accounts/(AC\w+)/Calls\.json$")
CALL_UPDATE = re.compile(r"/Accounts/(AC\w+)/Calls/(CA\w+)\.json$")
RECORDINGS = re.compile(r"/Accounts/(AC\w+)/Calls/(CA\w+)/Recordings\.json$")
PHONE = re.compile(r"^(\+[1-9]\d{6,14}|client:\w[\w.-]*|sip:\S+@\S+)$")
CALL_EVENTS = {"initiated", "ringing", "answered", "completed"}
RECORDING_EVENTS = {"in-progress", "completed", "absent"}
NOT_IN_PROGRESS = 21220
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

    @property
    def uri(self) -> str:
        """The URL, by the name the twilio client gives it."""
        return self.url


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
        auth_token: str | None = None,
        recording_delay_s: float = 0.3,
        queue_s: float = 0.05,
    ) -> None:
        """``credentials`` (account SID, auth token): requests with others get 401.
        ``auth_token`` signs what the fake posts (default: the credentials' token, else the
        client's). ``recording_delay_s``: a call's end to its recording's callback.
        ``queue_s``: a placed call's time in Twilio's queue before it is initiated."""
        super().__init__(logger=logging.getLogger(__name__), is_async=False)
        self.requests: list[RestRequest] = []
        self.status = status  # e.g. 500 to test failures of call updates
        self.credentials = credentials
        self.numbers = {n.sid: n for n in numbers or []}
        self.account_status = account_status
        self.auth_token = auth_token
        self.recording_delay_s = recording_delay_s
        self.network = PhoneNetwork()
        self.network.queue_s = queue_s
        self.callees: dict[str, Callee] = self.network.callees  # number → who answers it
        self.placed: dict[str, PlacedCall] = self.network.placed  # call SID → placed call
        self.recordings: dict[str, Recording] = self.network.recordings  # RE SID → recording
        self._loop = loop
        self._callers: dict[str, SimulatedCaller] = {}

    def connect(self, caller: SimulatedCaller) -> None:
        """An inbound call the REST API can change (update, record)."""
        self._callers[caller.call_sid] = caller

    # --- the test's side --------------------------------------------------------------------

    async def answered(self, call: str, timeout: float = 10.0) -> SimulatedCaller:
        """The callee of a placed call (its SID, or the number called) once its stream has
        started: script the person through it (``say``, ``hang_up``, ``wait_for_answer``)."""
        return await self.network.answered(call, timeout)

    @property
    def errors(self) -> list[BaseException]:
        """Exceptions raised in the fake's own tasks (a test can assert there are none)."""
        return self.network.errors

    async def aclose(self) -> None:
        """Cancel and await every task the fake started; placed calls still up are torn down."""
        await self.network.aclose()

    async def close(self) -> None:
        await self.aclose()

    async def __aenter__(self) -> TwilioRestFake:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def _event_loop(self) -> asyncio.AbstractEventLoop | None:
        if self._loop is not None:
            return self._loop
        try:
            return asyncio.get_running_loop()
        except RuntimeError:
            return None

    def _signing_token(self, auth: tuple[str, str] | None) -> str:
        if self.auth_token is not None:
            return self.auth_token
        if self.credentials is not None:
            return self.credentials[1]
        return auth[1] if auth else ""

    # --- the REST API -----------------------------------------------------------------------

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
        if (match := CALLS.search(uri)) and method == "POST":
            return self._create_call(match.group(1), form, auth)
        if match := RECORDINGS.search(uri):
            return self._recordings(method, form, match.group(1), match.group(2), auth)
        if match := CALL_UPDATE.search(uri):
            return self._update_call(method, form, *match.groups())
        if (match := ACCOUNT.search(uri)) and method == "GET":
            return self._account(match.group(1))
        if (match := NUMBERS.search(uri)) and method == "GET":
            return self._list_numbers(match.group(1), query)
        if (match := NUMBER.search(uri)) and method == "POST":
            return self._update_number(match.group(1), match.group(2), form)
        return _error(404, 20404, f"The requested resource {uri} was not found")

    def _create_call(
        self, account: str, form: dict[str, Any], auth: tuple[str, str] | None
    ) -> Response:
        to, from_ = form_text(form, "To"), form_text(form, "From")
        url, twiml = form_text(form, "Url"), form_text(form, "Twiml")
        if not to:
            return _error(400, 21201, "No 'To' number is specified")
        if not PHONE.match(to):
            return _error(400, 21211, f"Invalid 'To' Phone Number: {to}")
        if not from_:
            return _error(400, 21213, "No 'From' number is specified")
        if not PHONE.match(from_):
            return _error(400, 21212, f"Invalid 'From' Phone Number: {from_}")
        if not url and not twiml and not form_text(form, "ApplicationSid"):
            return _error(400, 21205, "A 'Url', 'Twiml' or 'ApplicationSid' is required")
        for name in ("Url", "StatusCallback", "AsyncAmdStatusCallback"):
            value = form_text(form, name)
            if value and urllib.parse.urlsplit(value).scheme not in ("http", "https"):
                return _error(400, 21205, f"{name} is not a valid URL: {value}")
        if not set(form_list(form, "StatusCallbackEvent")) <= CALL_EVENTS:
            return _error(400, 21626, "Invalid 'StatusCallbackEvent'")
        if form_text(form, "MachineDetection") not in ("", "Enable", "DetectMessageEnd"):
            return _error(400, 20001, "Invalid 'MachineDetection'")
        loop = self._event_loop()
        if loop is None:
            return _error(500, 20500, "TwilioRestFake was given no event loop to place calls on")
        call = PlacedCall(
            sid=new_sid("CA"),
            account_sid=account,
            form=form,
            callee=self.network.callee_for(to),
            auth_token=self._signing_token(auth),
            created_at=time.monotonic(),
        )
        self.placed[call.sid] = call
        self.network.spawn_threadsafe(loop, self.network.play(call), f"call {call.sid}")
        return Response(201, json.dumps(call.resource()))

    def _update_call(self, method: str, form: dict[str, Any], account: str, sid: str) -> Response:
        placed = self.placed.get(sid)
        if method == "GET":
            if placed is None:
                return _error(404, 20404, f"The requested resource /Calls/{sid}.json was not found")
            return Response(200, json.dumps(placed.resource()))
        if self.status >= 400:
            return _error(self.status, 20000 + self.status, "fake")
        caller = self._callers.get(sid) or (placed.caller if placed is not None else None)
        status = form_text(form, "Status")
        twiml, url = form_text(form, "Twiml"), form_text(form, "Url")
        loop = self._event_loop()
        if (caller is not None and caller.ended) or (placed is not None and placed.ended):
            return _error(400, NOT_IN_PROGRESS, "Call is not in-progress. Cannot redirect.")
        if placed is not None and caller is None:  # still queued or ringing
            if status in ("canceled", "completed") and loop is not None:
                loop.call_soon_threadsafe(placed.cancel.set)
            elif twiml:  # runs when it is answered
                placed.form = {k: v for k, v in placed.form.items() if k != "Url"}
                placed.form["Twiml"] = twiml
            elif url:
                placed.form = {**placed.form, "Url": url}
        elif caller is not None and loop is not None and method == "POST":
            if status == "completed":
                self.network.spawn_threadsafe(loop, caller.end_by_rest(), f"end {sid}")
            elif twiml:
                self.network.spawn_threadsafe(loop, caller.replace_twiml(twiml), f"twiml {sid}")
            elif url:
                self.network.spawn_threadsafe(loop, caller.replace_url(url), f"url {sid}")
        if placed is not None:
            body = placed.resource()
            if caller is None and status in ("canceled", "completed"):
                body["status"] = "canceled"
            elif caller is not None and status == "completed":
                body["status"] = "completed"
            return Response(200, json.dumps(body))
        status = status or "in-progress"
        return Response(200, json.dumps({"sid": sid, "account_sid": account, "status": status}))

    def _recordings(
        self,
        method: str,
        form: dict[str, Any],
        account: str,
        sid: str,
        auth: tuple[str, str] | None,
    ) -> Response:
        if method == "GET":
            found = [r.resource() for r in self.recordings.values() if r.call_sid == sid]
            path = f"/2010-04-01/Accounts/{account}/Calls/{sid}/Recordings.json"
            page = {"recordings": found, "page": 0, "page_size": 50, "start": 0}
            page |= {"end": max(0, len(found) - 1), "uri": path, "first_page_uri": path}
            page |= {"next_page_uri": None, "previous_page_uri": None}
            return Response(200, json.dumps(page))
        placed = self.placed.get(sid)
        caller = self._callers.get(sid) or (placed.caller if placed is not None else None)
        if caller is None and placed is None:
            return _error(404, 20404, f"The requested resource /Calls/{sid} was not found")
        if caller is None or not caller.result.answered_at or caller.ended:
            return _error(400, NOT_IN_PROGRESS, "Call is not in-progress. Cannot record.")
        if not set(form_list(form, "RecordingStatusCallbackEvent")) <= RECORDING_EVENTS:
            return _error(400, 21626, "Invalid 'RecordingStatusCallbackEvent'")
        loop = self._event_loop()
        if loop is None:
            return _error(500, 20500, "TwilioRestFake was given no event loop")
        recording = Recording(
            sid=new_sid("RE"),
            call_sid=sid,
            account_sid=account,
            form=form,
            auth_token=placed.auth_token if placed is not None else caller.auth_token,
            started_at=time.monotonic(),
            start_time=rfc2822_now(),
            delay_s=self.recording_delay_s,
        )
        self.recordings[recording.sid] = recording
        work = self.network.record(recording, caller)
        self.network.spawn_threadsafe(loop, work, f"recording {recording.sid}")
        return Response(201, json.dumps(recording.resource()))

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
