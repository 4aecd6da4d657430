"""gemini-phone-bridge dev-phone: the Twilio number is pointed at the tunnel and restored (no network)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from twilio.http import HttpClient
from twilio.http.response import Response

from bridge.dev_phone import TwilioNumber

ACCOUNT = "AC" + "1" * 32
NUMBER_SID = "PN" + "2" * 32


class FakeTwilio(HttpClient):
    """Twilio's IncomingPhoneNumbers API, as the twilio client's pluggable HTTP client."""

    def __init__(self) -> None:
        super().__init__(logger=logging.getLogger(__name__), is_async=False)
        self.voice_url = "https://old.example.com/voice"
        self.status_callback = "https://old.example.com/status"
        self.requests: list[tuple[str, str, dict]] = []

    def request(
        self,
        method,
        uri,
        params=None,
        data=None,
        headers=None,
        auth=None,
        timeout=None,
        allow_redirects=False,
    ):  # type: ignore[no-untyped-def, override]
        self.requests.append((method, uri, dict(params or data or {})))
        number = {
            "sid": NUMBER_SID,
            "phone_number": "+14155550100",
            "voice_url": self.voice_url,
            "voice_method": "POST",
            "status_callback": self.status_callback,
            "status_callback_method": "GET",
            "account_sid": ACCOUNT,
        }
        if method == "GET" and uri.endswith("/IncomingPhoneNumbers.json"):
            found = [number] if (params or {}).get("PhoneNumber") == "+14155550100" else []
            return Response(
                200,
                json.dumps(
                    {
                        "incoming_phone_numbers": found,
                        "next_page_uri": None,
                        "page": 0,
                        "page_size": 1,
                    }
                ),
            )
        if method == "POST" and uri.endswith(f"/IncomingPhoneNumbers/{NUMBER_SID}.json"):
            self.voice_url = (data or {})["VoiceUrl"]
            self.status_callback = (data or {})["StatusCallback"]
            return Response(200, json.dumps({**number, "voice_url": self.voice_url}))
        return Response(404, json.dumps({"code": 20404, "message": "not found", "status": 404}))


def test_the_number_points_at_the_tunnel_and_is_restored() -> None:
    twilio = FakeTwilio()
    number = TwilioNumber(ACCOUNT, "auth", "+14155550100", http_client=twilio)
    previous = number.point_at("https://abc.ngrok.app")
    assert previous.voice_url == "https://old.example.com/voice"
    assert twilio.voice_url == "https://abc.ngrok.app/api/inbound-call"
    assert twilio.status_callback == "https://abc.ngrok.app/api/call-status"
    number.restore()
    assert twilio.voice_url == "https://old.example.com/voice"
    assert twilio.status_callback == "https://old.example.com/status"
    posts = [r for r in twilio.requests if r[0] == "POST"]
    assert posts[0][2] == {
        "VoiceUrl": "https://abc.ngrok.app/api/inbound-call",
        "VoiceMethod": "POST",
        "StatusCallback": "https://abc.ngrok.app/api/call-status",
        "StatusCallbackMethod": "POST",
    }
    assert posts[1][2]["StatusCallbackMethod"] == "GET"  # put back as it was
    number.restore()  # once only
    assert len([r for r in twilio.requests if r[0] == "POST"]) == 2


def test_an_unknown_number_is_a_clear_error() -> None:
    number = TwilioNumber(ACCOUNT, "auth", "+19995550000", http_client=FakeTwilio())
    try:
        number.point_at("https://abc.ngrok.app")
    except Exception as exc:  # ConfigError names the setting
        assert str(exc).startswith("TWILIO_PHONE_NUMBER: ")
    else:
        raise AssertionError("expected an error")


def test_missing_credentials_fail_in_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NGROK_", "TWILIO_"))}
    result = subprocess.run(
        [sys.executable, "-m", "bridge", "dev-phone"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert (
        result.stdout.strip()
        == "gemini-phone-bridge dev-phone: NGROK_AUTHTOKEN: not set (needed by gemini-phone-bridge dev-phone)"
    )
