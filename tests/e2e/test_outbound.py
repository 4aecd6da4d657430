"""Outbound calls: placed with POST /api/calls, a person or an answering machine at the
other end, reported like every call.

The simulated Twilio places the call from the bridge's real REST request (through the
twilio library), rings the callee, fetches the call's TwiML, opens the Media Stream and
posts the answering-machine verdict and the status callbacks, all signed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from twilio.http.response import Response
from twilio.request_validator import RequestValidator

from bridge.testing.emulator import EmulatorOptions
from bridge.testing.harness import Deployment, loopback_deployment
from bridge.testing.phone_network import Callee, CalleeKind
from bridge.testing.redis_server import RedisServer
from bridge.testing.twilio_rest import TwilioRestFake
from bridge.testing.webhook_receiver import WebhookReceiver

from .test_calls import SHORT, run

pytestmark = pytest.mark.e2e

ACCOUNT = "AC" + "0" * 32
SECRET = "report-secret-" + "q7" * 8
TOKEN = "operator-token-" + "x9" * 8
OURS = "+14155550100"
QUIET_LINE = "+14155550101"
PERSON = "+442071838750"
PERSONAS = {
    OURS: {
        "name": "reminders",
        "system_prompt": "You remind {{name}} of the appointment at {{time}}.",
        "greeting": "Greet {{name}} and remind them of {{time}}.",
        "voicemail": "Hello {{name}}, a reminder of your appointment at {{time}}. Goodbye.",
        "consent": "This call may be recorded.",
    },
    QUIET_LINE: {"name": "no-messages", "system_prompt": "You call people."},
}
ORDER = {"to": PERSON, "persona": "reminders", "variables": {"name": "Ada", "time": "3 pm"}}


def env_for(tmp_path: Path, rx: WebhookReceiver, **more: str) -> dict[str, str]:
    path = tmp_path / "personas.json"
    path.write_text(json.dumps(PERSONAS))
    return {
        "PERSONAS_FILE": str(path),
        "TWILIO_ACCOUNT_SID": ACCOUNT,
        "OPERATOR_TOKEN": TOKEN,
        "CALL_REPORT_URL": rx.url("/report"),
        "WEBHOOK_SECRET": SECRET,
        **more,
    }


def _post(url: str, body: Any, token: str | None) -> tuple[int, Any]:
    return _post_raw(url, json.dumps(body).encode(), token)


def _post_raw(url: str, raw: bytes, token: str | None = TOKEN) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, raw, headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


async def place(d: Deployment, body: Any, token: str | None = TOKEN) -> tuple[int, Any]:
    return await asyncio.to_thread(_post, d.public_url + "/api/calls", body, token)


def placed_calls(rest: TwilioRestFake) -> list[str]:
    return [r.uri for r in rest.requests if r.uri.endswith("/Calls.json")]


def test_an_outbound_call_converses_with_its_variables_in_the_prompt(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with WebhookReceiver(SECRET) as rx, TwilioRestFake() as rest:
            rest.callees[PERSON] = Callee(CalleeKind.HUMAN, amd_s=0.5)
            options = EmulatorOptions(reply_seconds=0.8)
            env = env_for(tmp_path, rx)
            async with loopback_deployment(options, env=env, twilio_http_client=rest) as d:
                status, answer = await place(d, ORDER)
                assert status == 201, answer
                sid = answer["call_sid"]
                assert answer["from"] == OURS and answer["persona"] == "reminders"
                form = rest.placed[sid].form
                assert form["Url"] == d.public_url + f"/api/outbound-call?order={answer['order']}"
                assert form["MachineDetection"] == "DetectMessageEnd" and form["AsyncAmd"] == "true"
                person = await rest.answered(sid)
                assert person.result.twilio_said == ["This call may be recorded."]  # consent
                await person.wait_for_answer(timeout=10)  # greeted first, once known human
                await person.wait_until_quiet(quiet_s=0.3)
                await person.say(SHORT)
                await person.wait_for_answer(timeout=10)
                await person.wait_until_quiet(quiet_s=0.3)
                await person.hang_up()
                (session,) = d.emulator.sessions
                setup = json.dumps(session.setup)
                assert "You remind Ada of the appointment at 3 pm." in setup
                assert session.client_turns == ["Greet Ada and remind them of 3 pm."]
                (report,) = await rx.wait_for(1, 15)
                body = report.json
                assert report.signature_valid
                assert (body["direction"], body["from"], body["to"]) == ("outbound", OURS, PERSON)
                assert (body["outcome"], body["reason"]) == ("completed", "caller_hung_up")
                assert body["answered_by"] == "human"
                assert body["variables"] == {"name": "Ada", "time": "3 pm"}
                assert body["persona_source"] == "request"
                assert body["order"] == answer["order"]
                assert [t["speaker"] for t in body["transcript"]][:2] == ["assistant", "caller"]
                # Twilio's own "completed" callback came too: still the one report.
                assert any(
                    c.params["CallStatus"] == "completed" for c in rest.placed[sid].status_callbacks
                )
                await asyncio.sleep(1.0)
                assert len(rx.deliveries) == 1
            assert rest.errors == []

    run(scenario())


@pytest.mark.parametrize("persona", ["reminders", "no-messages"])
def test_an_answering_machine_gets_the_voicemail_and_a_hang_up_and_no_conversation(
    tmp_path: Path, persona: str
) -> None:
    async def scenario() -> None:
        async with WebhookReceiver(SECRET) as rx, TwilioRestFake() as rest:
            rest.callees[PERSON] = Callee(CalleeKind.MACHINE)
            env = env_for(tmp_path, rx)
            async with loopback_deployment(
                EmulatorOptions(), env=env, twilio_http_client=rest
            ) as d:
                order = {**ORDER, "persona": persona}
                if persona == "no-messages":
                    order.pop("variables")
                status, answer = await place(d, order)
                assert status == 201, answer
                call = rest.placed[answer["call_sid"]]
                (report,) = await rx.wait_for(1, 20)
                assert call.answered_by == "machine_end_beep"
                if persona == "reminders":
                    assert [text for _, text in call.voicemail] == [
                        "Hello Ada, a reminder of your appointment at 3 pm. Goodbye."
                    ]
                    assert report.json["voicemail"] == "message_left"
                else:
                    assert call.voicemail == []
                    assert report.json["voicemail"] == "hung_up"
                assert call.ended
                assert d.emulator.sessions == []  # no Gemini session for a machine
                assert (report.json["outcome"], report.json["answered_by"]) == (
                    "voicemail",
                    "machine_end_beep",
                )
                assert report.json["transcript"] == []
            assert rest.errors == []

    run(scenario())


@pytest.mark.parametrize("kind", [CalleeKind.NO_ANSWER, CalleeKind.BUSY])
def test_a_call_nobody_answers_is_reported_so(tmp_path: Path, kind: CalleeKind) -> None:
    async def scenario() -> None:
        async with WebhookReceiver(SECRET) as rx, TwilioRestFake() as rest:
            rest.callees[PERSON] = Callee(kind, ring_s=0.3)
            env = env_for(tmp_path, rx, MAX_CONCURRENT_CALLS="1")
            async with loopback_deployment(
                EmulatorOptions(), env=env, twilio_http_client=rest
            ) as d:
                status, _ = await place(d, ORDER)
                assert status == 201
                assert d.services.registry.in_use == 1  # it holds a place while it rings
                (report,) = await rx.wait_for(1, 15)
                expected = "no_answer" if kind is CalleeKind.NO_ANSWER else "busy"
                assert report.json["outcome"] == expected
                assert report.json["transcript"] == [] and report.json["streams"] == []
                assert d.services.registry.in_use == 0  # given back
            assert rest.errors == []

    run(scenario())


@pytest.mark.parametrize(
    ("body", "token", "status", "says"),
    [
        ({**ORDER, "to": "020 7183 8750"}, TOKEN, 400, "E.164"),
        ({**ORDER, "persona": "sales"}, TOKEN, 404, "unknown persona"),
        ({**ORDER, "variables": {"name": "Ada"}}, TOKEN, 400, "nobody gave: time"),
        ({**ORDER, "to": "+33142686000"}, TOKEN, 403, "OUTBOUND_ALLOWLIST"),
        (ORDER, "wrong-token-" + "z" * 10, 401, "operator token"),
        (ORDER, None, 401, "operator token"),
    ],
    ids=["not-e164", "unknown-persona", "missing-variable", "not-allowed", "bad-token", "no-token"],
)
def test_bad_orders_are_refused_and_nothing_is_dialled(
    tmp_path: Path, body: Any, token: str | None, status: int, says: str
) -> None:
    async def scenario() -> None:
        async with WebhookReceiver(SECRET) as rx, TwilioRestFake() as rest:
            env = env_for(tmp_path, rx, OUTBOUND_ALLOWLIST="+1,+44")
            async with loopback_deployment(
                EmulatorOptions(), env=env, twilio_http_client=rest
            ) as d:
                got, answer = await place(d, body, token)
                assert got == status
                assert says in answer["error"]
                assert placed_calls(rest) == []

    run(scenario())


def test_without_an_operator_token_no_call_is_placed_even_from_loopback(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with WebhookReceiver(SECRET) as rx, TwilioRestFake() as rest:
            env = {**env_for(tmp_path, rx), "OPERATOR_TOKEN": ""}
            async with loopback_deployment(
                EmulatorOptions(), env=env, twilio_http_client=rest
            ) as d:
                got, answer = await place(d, ORDER, None)
                assert got == 403 and "OPERATOR_TOKEN" in answer["error"]
                assert placed_calls(rest) == []

    run(scenario())


def test_a_recorded_call_reports_its_recording(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with WebhookReceiver(SECRET) as rx, TwilioRestFake() as rest:
            env = env_for(tmp_path, rx, RECORD_CALLS="true", GREETING="Greet the caller.")
            async with loopback_deployment(
                EmulatorOptions(reply_seconds=0.5), env=env, twilio_http_client=rest
            ) as d:
                caller = d.caller(account_sid=ACCOUNT, to_number=OURS)
                rest.connect(caller)
                async with caller.dial() as call:
                    await call.wait_for_answer(timeout=5)
                    await call.wait_until_quiet(quiet_s=0.3)
                (recording,) = rest.recordings.values()
                assert recording.call_sid == caller.call_sid
                assert recording.form["RecordingChannels"] == "dual"
                (report,) = await rx.wait_for(1, 15)
                got = report.json["recording"]
                assert got["status"] == "completed" and got["sid"] == recording.sid
                assert got["url"].endswith(f"/Recordings/{recording.sid}")
                assert got["duration_s"] is not None
            assert rest.errors == []

    run(scenario())


@pytest.mark.parametrize(
    "route", ["/api/outbound-call", "/api/amd-status", "/api/recording-status"]
)
def test_forged_twilio_callbacks_are_refused(tmp_path: Path, route: str) -> None:
    async def scenario() -> None:
        async with WebhookReceiver(SECRET) as rx, TwilioRestFake() as rest:
            env = env_for(tmp_path, rx)
            async with loopback_deployment(
                EmulatorOptions(), env=env, twilio_http_client=rest
            ) as d:
                caller = d.caller(account_sid=ACCOUNT)
                params = {
                    **caller.webhook_params(),
                    "AnsweredBy": "machine_end_beep",
                    "RecordingStatus": "completed",
                    "RecordingUrl": "https://evil.example/x",
                }
                forged = RequestValidator("not-the-auth-token").compute_signature(
                    d.public_url + route, params
                )
                status, _ = await asyncio.to_thread(
                    caller._post, d.public_url + route, params, forged
                )
                assert status == 403
                assert rest.requests == []

    run(scenario())


@pytest.mark.parametrize("state", ["alone", "fleet"])
def test_calls_placed_at_once_never_overshoot_the_capacity(tmp_path: Path, state: str) -> None:
    """``fleet``: review, with STATE_URL set no place was kept and all three rang; the two
    people who answered got the apology."""
    with contextlib.ExitStack() as stack:
        shared = {}
        if state == "fleet":
            shared["STATE_URL"] = stack.enter_context(RedisServer()).url
        run(_three_orders_at_capacity_one(tmp_path, shared))


async def _three_orders_at_capacity_one(tmp_path: Path, shared: dict[str, str]) -> None:
    async with WebhookReceiver(SECRET) as rx, TwilioRestFake() as rest:
        rest.callees[PERSON] = Callee(CalleeKind.NO_ANSWER, ring_s=5.0)
        env = env_for(tmp_path, rx, MAX_CONCURRENT_CALLS="1", **shared)
        async with loopback_deployment(EmulatorOptions(), env=env, twilio_http_client=rest) as d:
            answers = await asyncio.gather(*(place(d, ORDER) for _ in range(3)))
            assert sorted(status for status, _ in answers) == [201, 503, 503]
            assert len(placed_calls(rest)) == 1
            assert d.services.registry.in_use == 1


def test_bodies_no_parser_can_take_and_voicemails_too_long_as_xml_are_refused(
    tmp_path: Path,
) -> None:
    """Review: a 5,000-digit number or deep nesting answered 500; a voicemail of 1,060
    characters, mostly ``&``, was 12,628 once written as TwiML (Twilio takes 4,000)."""

    async def scenario() -> None:
        async with WebhookReceiver(SECRET) as rx, TwilioRestFake() as rest:
            async with loopback_deployment(
                EmulatorOptions(), env=env_for(tmp_path, rx), twilio_http_client=rest
            ) as d:
                for raw in (
                    b'{"to": "+442071838750", "persona": "reminders", "variables": {"name": '
                    + b"9" * 5000
                    + b', "time": "3 pm"}}',
                    b"[" * 15_000,
                ):
                    got, answer = await asyncio.to_thread(
                        _post_raw, d.public_url + "/api/calls", raw
                    )
                    assert got == 400 and "not JSON this server can read" in answer["error"]
                ampersands = {"name": "&" * 500, "time": "&" * 500}
                got, answer = await place(d, {**ORDER, "variables": ampersands})
                assert got == 400 and "once written as TwiML" in answer["error"]
                assert placed_calls(rest) == []
                assert d.services.registry.in_use == 0

    run(scenario())


class _ProxyPageForCalls(TwilioRestFake):
    """Twilio behind a proxy that answers the call's creation with its own HTML page."""

    requests_seen_by_proxy = 0

    def request(self, method: str, uri: str, *args: Any, **kwargs: Any) -> Response:
        if method == "POST" and uri.endswith("/Calls.json"):
            self.requests_seen_by_proxy += 1
            return Response(200, "<html><body>Service Unavailable</body></html>")
        return super().request(method, uri, *args, **kwargs)  # type: ignore[no-any-return]


def test_an_answer_from_twilio_that_cannot_be_read_is_an_uncertain_placement(
    tmp_path: Path,
) -> None:
    """Review: a proxy's page instead of Twilio's JSON answered 500 with no order id; the
    call may have been placed, so it is the 504 naming the order."""

    async def scenario() -> None:
        async with WebhookReceiver(SECRET) as rx, _ProxyPageForCalls() as rest:
            async with loopback_deployment(
                EmulatorOptions(), env=env_for(tmp_path, rx), twilio_http_client=rest
            ) as d:
                got, answer = await place(d, ORDER)
                assert got == 504 and answer["order"] and "could not be read" in answer["error"]
                assert rest.requests_seen_by_proxy == 1

    run(scenario())


def test_a_voicemail_twilio_refuses_is_reported_as_not_left(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with WebhookReceiver(SECRET) as rx, TwilioRestFake() as rest:
            rest.callees[PERSON] = Callee(CalleeKind.MACHINE, machine_timeout_s=2.0)
            async with loopback_deployment(
                EmulatorOptions(), env=env_for(tmp_path, rx), twilio_http_client=rest
            ) as d:
                status, answer = await place(d, ORDER)
                assert status == 201
                rest.status = 500  # from now on Twilio refuses every change to the call
                (report,) = await rx.wait_for(1, 40)
                assert report.json["outcome"] == "voicemail"
                assert report.json["voicemail"] == "not_handled"
                assert rest.placed[answer["call_sid"]].voicemail == []
                assert d.emulator.sessions == []

    run(scenario())
