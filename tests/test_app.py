"""Routing and operator access, through Starlette's test client (no sockets needed)."""

from __future__ import annotations

import logging

from starlette.testclient import TestClient

from bridge.app import create_app
from bridge.config import load_settings
from bridge.gemini.endpoint import endpoint_from_settings
from bridge.logs import REDACTED, RedactingFormatter
from bridge.services import Services

ENV = {"PUBLIC_URL": "https://b.example.com", "TWILIO_AUTH_TOKEN": "tok", "GEMINI_API_KEY": "key"}


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
    remote = client(OPERATOR_TOKEN="op-token-1")
    assert remote.get("/metrics").status_code == 401
    assert remote.get("/metrics", headers={"Authorization": "Basic op-token-1"}).status_code == 401
    response = remote.get("/metrics", headers={"Authorization": "Bearer op-token-1"})
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
