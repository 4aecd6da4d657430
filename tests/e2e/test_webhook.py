"""The inbound-call webhook over a real socket: what Twilio gets for good and bad requests."""

from __future__ import annotations

import asyncio
import secrets
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET

import pytest
from twilio.request_validator import RequestValidator

from bridge.testing.harness import Deployment, loopback_deployment

from ..fakes import json_log_lines

pytestmark = pytest.mark.e2e

ACCOUNT = "AC" + "1" * 32


def post(
    d: Deployment,
    params: dict[str, str],
    *,
    content_type: str = "application/x-www-form-urlencoded",
    sign: bool = True,
    query: str = "",
    route: str = "/api/inbound-call",
) -> tuple[int, str]:
    path = route + (f"?{query}" if query else "")
    url = d.public_url + path
    body = urllib.parse.urlencode(params).encode()
    headers = {"Content-Type": content_type}
    if sign:
        headers["X-Twilio-Signature"] = RequestValidator(
            d.settings.twilio_auth_token
        ).compute_signature(url, params)
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def check(env: dict[str, str] | None, cases: list[tuple[dict[str, object], int]]) -> None:
    async def scenario() -> None:
        async with loopback_deployment(env=env) as d:
            for kwargs, status in cases:
                params = kwargs.pop("params")
                got, body = await asyncio.to_thread(post, d, params, **kwargs)  # type: ignore[arg-type]
                assert got == status, (kwargs, body)
                if status != 200:
                    assert "<Response>" not in body and "Traceback" not in body

    asyncio.run(scenario())


GOOD = {
    "CallSid": "CA" + "a" * 32,
    "AccountSid": ACCOUNT,
    "From": "+14155550123",
    "To": "+14155550100",
}


def test_good_webhook_gets_connect_stream_twiml_with_parameters() -> None:
    async def scenario() -> None:
        async with loopback_deployment() as d:
            status, body = await asyncio.to_thread(post, d, GOOD, query="source=test")
            assert status == 200
            stream = ET.fromstring(body).find("./Connect/Stream")
            assert stream is not None
            assert stream.attrib["url"] == d.settings.stream_url
            params = {p.attrib["name"]: p.attrib["value"] for p in stream.findall("Parameter")}
            assert (
                params["callSid"] == GOOD["CallSid"]
                and params["from"] == GOOD["From"]
                and params["to"] == GOOD["To"]
            )
            assert params["token"]
            assert stream.attrib["statusCallback"] == f"{d.public_url}/api/call-status"

    asyncio.run(scenario())


def test_status_callbacks_are_logged_and_counted_and_forgeries_refused(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stream_error = {
        "AccountSid": ACCOUNT,
        "CallSid": GOOD["CallSid"],
        "StreamSid": "MZ" + "b" * 32,
        "StreamEvent": "stream-error",
        "StreamError": "Stream - WebSocket - Handshake Error",
        "Timestamp": "2026-11-22T06:00:00Z",
    }
    completed = {**GOOD, "CallStatus": "completed", "CallDuration": "42"}

    async def scenario() -> None:
        async with loopback_deployment() as d:
            route = "/api/call-status"
            assert await asyncio.to_thread(post, d, stream_error, route=route) == (204, "")
            assert (await asyncio.to_thread(post, d, completed, route=route))[0] == 204
            forged = await asyncio.to_thread(post, d, completed, route=route, sign=False)
            assert forged[0] == 403
            nonsense = {**GOOD, "CallStatus": "<script>"}
            assert (await asyncio.to_thread(post, d, nonsense, route=route))[0] == 400
            metrics = d.services.metrics.render().decode()
            assert 'bridge_twilio_status_callbacks_total{status="stream-error"} 1.0' in metrics
            assert 'bridge_twilio_status_callbacks_total{status="completed"} 1.0' in metrics
            assert 'bridge_twilio_status_callbacks_total{status="forbidden"} 1.0' in metrics

    with caplog.at_level("INFO", logger="bridge.web.status_callback"):
        asyncio.run(scenario())
    records = [r for r in caplog.records if getattr(r, "event", "") == "twilio_status"]
    assert [r.data["status"] for r in records] == ["stream-error", "completed"]  # type: ignore[attr-defined]
    assert records[0].levelname == "WARNING"
    assert records[0].data["error"] == "Stream - WebSocket - Handshake Error"  # type: ignore[attr-defined]
    assert records[1].data["duration_s"] == 42  # type: ignore[attr-defined]


def test_bad_webhooks_get_a_clear_4xx() -> None:
    check(
        {"TWILIO_ACCOUNT_SID": ACCOUNT},
        [
            ({"params": GOOD, "sign": False}, 403),
            ({"params": {**GOOD, "CallSid": "CA123"}}, 400),
            ({"params": {k: v for k, v in GOOD.items() if k != "CallSid"}}, 400),
            ({"params": {**GOOD, "AccountSid": "AC" + "2" * 32}}, 403),
            ({"params": {}, "content_type": "application/json", "sign": True}, 415),
            ({"params": GOOD}, 200),
        ],
    )


def test_a_nonsense_content_length_is_refused_not_a_server_error() -> None:
    import http.client
    import urllib.parse as parse

    async def scenario() -> None:
        async with loopback_deployment() as d:

            def send() -> int:
                target = parse.urlsplit(d.public_url)
                conn = http.client.HTTPConnection(target.hostname, target.port, timeout=5)
                conn.putrequest("POST", "/api/call-status")
                conn.putheader("Content-Type", "application/x-www-form-urlencoded")
                conn.putheader("Content-Length", "lots")
                conn.endheaders()
                status = conn.getresponse().status
                conn.close()
                return status

            # uvicorn's parser or the route's own cap answers; never a 500.
            assert await asyncio.to_thread(send) in (400, 413)

    asyncio.run(scenario())


def test_a_refused_signature_says_what_was_checked_and_what_to_fix() -> None:
    """A wrong PUBLIC_URL and a wrong auth token used to log the same line."""

    def send(d: Deployment, host: str, signed_url: str, token: str | None) -> int:
        params = {**GOOD, "CallSid": "CA" + secrets.token_hex(16)}
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Host": host}
        if token is not None:
            headers["X-Twilio-Signature"] = RequestValidator(token).compute_signature(
                signed_url, params
            )
        request = urllib.request.Request(
            d.public_url + "/api/inbound-call",
            data=urllib.parse.urlencode(params).encode(),
            headers=headers,
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code

    async def scenario() -> list[dict]:
        async with loopback_deployment(env={"GEMINI_PREWARM_TTL": "1"}) as d:
            port = d.public_url.rsplit(":", 1)[1]
            checked = f"{d.public_url}/api/inbound-call"
            token = d.settings.twilio_auth_token
            ngrok = f"other.ngrok.app:{port}"
            with json_log_lines() as lines:
                # Twilio called another host than PUBLIC_URL's (and signed that URL).
                signed = f"http://{ngrok}/api/inbound-call"
                assert await asyncio.to_thread(send, d, ngrok, signed, token) == 403
                # PUBLIC_URL is right, the auth token is another account's.
                host = d.settings.public_host
                assert await asyncio.to_thread(send, d, host, checked, "another-token") == 403
                assert await asyncio.to_thread(send, d, host, checked, None) == 403
                # An answered call whose stream never comes: pre-warming's line names it too.
                assert await asyncio.to_thread(send, d, host, checked, token) == 200
                await asyncio.sleep(1.4)
        return lines

    lines = asyncio.run(scenario())
    refused = [e for e in lines if "refused" in e["message"]]
    wrong_host, wrong_token, unsigned = (e["message"] for e in refused)
    checked = wrong_token.split("does not match ", 1)[1].split(";")[0]
    assert checked.startswith("http://127.0.0.1:") and checked.endswith("/api/inbound-call")
    assert f"does not match {checked}; the request came to Host other.ngrok.app:" in wrong_host
    assert "set PUBLIC_URL to that URL" in wrong_host
    assert "check TWILIO_AUTH_TOKEN" in wrong_token and "Host" not in wrong_token
    assert "no X-Twilio-Signature header" in unsigned
    assert all(e["call_sid"].startswith("CA") for e in refused)
    (expired,) = [e for e in lines if "no stream came" in e["message"]]
    assert expired["call_sid"] in expired["message"]
