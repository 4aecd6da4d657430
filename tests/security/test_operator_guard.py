"""Operator routes without OPERATOR_TOKEN, on a real ``bridge serve`` (review item 4):
"from loopback" must not be all it takes, since a same-host forwarder or a web page
re-pointed at 127.0.0.1 (DNS rebinding) is loopback too."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator

import pytest

from bridge.testing.served import ServedBridge, served_bridge, start_refusal

pytestmark = pytest.mark.e2e

GUARDED = [
    ("GET", "/api/calls/stats"),
    ("GET", "/metrics"),
    ("GET", "/dashboard"),
    ("GET", "/softphone"),
    ("POST", "/softphone/call"),
]
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def bridge() -> Iterator[ServedBridge]:
    with served_bridge({"DEV_SOFTPHONE": "1", "MAX_CONCURRENT_CALLS": "3"}) as served:
        yield served


def test_local_requests_addressed_to_localhost_are_let_in(bridge: ServedBridge) -> None:
    for host in (f"127.0.0.1:{bridge.port}", f"localhost:{bridge.port}", "[::1]"):
        for method, path in GUARDED[:4]:
            assert bridge.request(method, path, headers={"Host": host}).status == 200, (host, path)
    same_page = {"Host": f"localhost:{bridge.port}", "Origin": f"http://localhost:{bridge.port}"}
    assert bridge.request("GET", "/api/calls/stats", headers=same_page).status == 200


@pytest.mark.parametrize(
    "headers",
    [
        {"Host": "voice.attacker.example"},  # DNS rebinding, or a forwarder for the public name
        {"Host": "localhost", "Origin": "http://voice.attacker.example"},  # another page
        {"Host": "localhost", "Origin": "null"},  # a sandboxed page or a file
        {"Host": "localhost", "Forwarded": "for=203.0.113.9"},  # a proxy on this host
        {"Host": "localhost", "X-Forwarded-For": "127.0.0.1"},
        {"Host": "localhost", "X-Real-IP": "203.0.113.9"},
        {"Host": "evil.example@127.0.0.1"},
    ],
    ids=["host", "origin", "null-origin", "forwarded", "x-forwarded-for", "x-real-ip", "userinfo"],
)
def test_foreign_host_origin_or_proxy_headers_are_refused(
    bridge: ServedBridge, headers: dict[str, str]
) -> None:
    for method, path in GUARDED:
        response = bridge.request(method, path, headers={**headers, **JSON}, body=b"{}")
        assert response.status == 403, (path, response.text)
        assert "OPERATOR_TOKEN" in response.text


def test_a_rebinding_page_cannot_start_calls_nor_fill_the_line(bridge: ServedBridge) -> None:
    """Review: 20 requests opened 20 Gemini sessions; 5 filled MAX_CONCURRENT_CALLS and
    real callers were told "busy" for 60 s."""
    sessions = len(bridge.emulator.sessions)
    page = {"Host": f"rebound.attacker.example:{bridge.port}"}
    page["Origin"] = f"http://{page['Host']}"
    for _ in range(20):
        response = bridge.request("POST", "/softphone/call", headers={**page, **JSON}, body=b"{}")
        assert response.status == 403
    assert len(bridge.emulator.sessions) == sessions  # no Gemini session opened
    assert json.loads(bridge.request("GET", "/ready").body) == {"status": "ready"}


def test_start_up_says_what_the_guard_is_and_is_not(bridge: ServedBridge) -> None:
    log = bridge.log()
    assert "OPERATOR_TOKEN is not set" in log
    assert "does not keep out programs on this machine" in log


def test_a_softphone_without_a_token_is_refused_off_loopback() -> None:
    code, output = start_refusal(
        {
            "PUBLIC_URL": "https://voice.example.com",
            "TWILIO_AUTH_TOKEN": "auth-" + secrets.token_hex(16),
            "GEMINI_API_KEY": "gemini-" + secrets.token_hex(16),
            "DEV_SOFTPHONE": "1",
        },
        host="0.0.0.0",
    )
    assert code == 2, output  # (None: it served the softphone to the network)
    assert output.strip().splitlines() == [
        "gemini-phone-bridge: configuration error: DEV_SOFTPHONE: without OPERATOR_TOKEN the softphone is "
        "for this machine only: serve with --host 127.0.0.1, or set OPERATOR_TOKEN"
    ]
