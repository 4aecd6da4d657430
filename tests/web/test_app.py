"""Routing and operator access, through Starlette's test client (no sockets needed)."""

from __future__ import annotations

import logging

from starlette.testclient import TestClient

from bridge.config import load_settings
from bridge.gemini.endpoint import endpoint_from_settings
from bridge.observability.logs import REDACTED, JsonFormatter, RedactingFormatter
from bridge.runtime.services import Services
from bridge.web.app import create_app

ENV = {
    "PUBLIC_URL": "https://b.example.com",
    "TWILIO_AUTH_TOKEN": "twilio-auth-token-123",
    "GEMINI_API_KEY": "gemini-key-for-tests",
}


def client(**env: str) -> TestClient:
    settings = load_settings({**ENV, **env}, env_file=None)
    return TestClient(create_app(Services.build(settings, endpoint_from_settings(settings))))


def test_without_operator_token_stats_answer_only_loopback_clients() -> None:
    remote = client()  # the test client's peer is "testclient", not a loopback address
    for path in ("/api/calls/stats", "/metrics"):
        response = remote.get(path)
        assert response.status_code == 403 and "OPERATOR_TOKEN" in response.text
    assert remote.get("/health").status_code == 200


def test_with_operator_token_any_host_may_read_with_the_bearer() -> None:
    remote = client(OPERATOR_TOKEN="operator-token-0001")
    assert remote.get("/metrics").status_code == 401
    assert (
        remote.get("/metrics", headers={"Authorization": "Basic operator-token-0001"}).status_code
        == 401
    )
    response = remote.get("/metrics", headers={"Authorization": "Bearer operator-token-0001"})
    assert response.status_code == 200 and "bridge_active_calls" in response.text
    assert response.headers["content-type"].startswith("text/plain")


def test_unknown_routes_and_methods() -> None:
    c = client()
    assert c.get("/api/inbound-call").status_code == 405
    assert c.get("/nope").status_code == 404


def test_log_lines_never_carry_secrets() -> None:
    formatter = RedactingFormatter("%(message)s", ["AIza-secret-key", "AIza-secret"])
    record = logging.LogRecord(
        "x", logging.ERROR, __file__, 1, "url wss://h/?key=%s failed", ("AIza-secret-key",), None
    )
    assert formatter.format(record) == f"url wss://h/?key={REDACTED} failed"
    try:
        raise RuntimeError("token AIza-secret leaked into an exception")
    except RuntimeError:
        import sys

        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "boom", (), sys.exc_info())
    assert "AIza-secret" not in formatter.format(record)


def test_secrets_are_scrubbed_url_encoded_and_however_short() -> None:
    token = "op/t0ken+with=odd&chars"
    formatter = JsonFormatter([token, "k9"])
    for line in (
        '"GET /metrics?token=op%2Ft0ken%2Bwith%3Dodd%26chars HTTP/1.1" 401',  # quote
        '"GET /metrics?token=op%2Ft0ken%2Bwith%3Dodd%26chars&x=1 HTTP/1.1" 401',
        "form token=op%2Ft0ken%2Bwith%3Dodd%26chars",
        "key k9 in a reason",
    ):
        record = logging.LogRecord("x", logging.INFO, __file__, 1, line, (), None)
        text = formatter.format(record)
        assert "t0ken" not in text and "k9" not in text and REDACTED in text
    plus = "a b+c/d-secret-value"  # quote_plus writes the space as +
    record = logging.LogRecord(
        "x", logging.INFO, __file__, 1, "q=a+b%2Bc%2Fd-secret-value", (), None
    )
    assert "secret-value" not in JsonFormatter([plus]).format(record)
