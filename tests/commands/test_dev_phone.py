"""gemini-phone-bridge dev-phone: the number is pointed at the tunnel and restored (Twilio's
REST API faked at the twilio client's HTTP layer), and whatever stops it says so in one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bridge.commands.dev_phone import TwilioNumber
from bridge.testing.twilio_rest import IncomingNumber, TwilioRestFake

ACCOUNT = "AC" + "1" * 32
NUMBER_SID = "PN" + "2" * 32
ENV = {k: v for k, v in os.environ.items() if not k.startswith(("NGROK_", "TWILIO_"))}
SETTINGS = {
    "NGROK_AUTHTOKEN": "ngrok-token-123",
    "TWILIO_ACCOUNT_SID": ACCOUNT,
    "TWILIO_AUTH_TOKEN": "auth",
    "TWILIO_PHONE_NUMBER": "+14155550100",
}


def twilio() -> TwilioRestFake:
    number = IncomingNumber(
        NUMBER_SID,
        "+14155550100",
        voice_url="https://old.example.com/voice",
        status_callback="https://old.example.com/status",
        status_callback_method="GET",
    )
    return TwilioRestFake(credentials=(ACCOUNT, "auth"), numbers=[number])


def test_the_number_points_at_the_tunnel_and_is_restored() -> None:
    rest = twilio()
    number = TwilioNumber(ACCOUNT, "auth", "+14155550100", http_client=rest)
    previous = number.point_at("https://abc.ngrok.app")
    assert previous.voice_url == "https://old.example.com/voice"
    now = rest.numbers[NUMBER_SID]
    assert now.voice_url == "https://abc.ngrok.app/api/inbound-call"
    assert now.status_callback == "https://abc.ngrok.app/api/call-status"
    number.restore()
    assert now.voice_url == "https://old.example.com/voice"
    assert now.status_callback == "https://old.example.com/status"
    posts = [r for r in rest.requests if r.method == "POST"]
    assert posts[0].data == {
        "VoiceUrl": "https://abc.ngrok.app/api/inbound-call",
        "VoiceMethod": "POST",
        "StatusCallback": "https://abc.ngrok.app/api/call-status",
        "StatusCallbackMethod": "POST",
    }
    assert posts[1].data["StatusCallbackMethod"] == "GET"  # put back as it was
    number.restore()  # once only
    assert len([r for r in rest.requests if r.method == "POST"]) == 2


def test_an_unknown_number_is_a_clear_error() -> None:
    number = TwilioNumber(ACCOUNT, "auth", "+19995550000", http_client=twilio())
    try:
        number.point_at("https://abc.ngrok.app")
    except Exception as exc:  # ConfigError names the setting
        assert str(exc).startswith("TWILIO_PHONE_NUMBER: ")
    else:
        raise AssertionError("expected an error")


def dev_phone(cwd: Path, env: dict[str, str], pythonpath: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bridge", "dev-phone"],
        env={**ENV, **env, **({"PYTHONPATH": pythonpath} if pythonpath else {})},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_whatever_stops_dev_phone_is_one_line_saying_what_to_do(tmp_path: Path) -> None:
    result = dev_phone(tmp_path, {})
    assert result.returncode == 2
    assert (
        result.stdout.strip()
        == "gemini-phone-bridge dev-phone: NGROK_AUTHTOKEN: not set (needed by gemini-phone-bridge dev-phone)"
    )
    # Without the [dev-phone] extra (the test venv does not have it).
    result = dev_phone(tmp_path, SETTINGS)
    assert result.returncode == 2 and result.stderr == ""
    assert result.stdout.strip() == (
        "gemini-phone-bridge dev-phone: the ngrok SDK is not installed: run ./scripts/dev-phone "
        "(it installs it), or pip install 'gemini-phone-bridge[dev-phone]'"
    )
    # With it, when the tunnel cannot connect: the SDK raises a ValueError of many lines
    # (this stand-in raises what ngrok-python raises for a refused authtoken).
    sdk = tmp_path / "sdk"
    sdk.mkdir()
    (sdk / "ngrok.py").write_text(
        "def forward(address, authtoken, proto):\n"
        "    raise ValueError('failed to connect session\\n\\nCaused by:\\n  authentication failed: '\n"
        "        'The authtoken you specified does not look like a proper ngrok tunnel authtoken.\\n'\n"
        "        f'  Your authtoken: {authtoken}\\n\\nERR_NGROK_105\\n' + 'detail\\n' * 20)\n"
    )
    result = dev_phone(tmp_path, SETTINGS, pythonpath=str(sdk))
    assert result.returncode == 2 and result.stderr == ""
    assert result.stdout.strip() == (
        "gemini-phone-bridge dev-phone: ngrok could not open a tunnel (ERR_NGROK_105): check "
        "NGROK_AUTHTOKEN (dashboard.ngrok.com, Your Authtoken) and that this machine reaches "
        "the internet"
    )
