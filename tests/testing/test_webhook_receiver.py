"""The operator's webhook receiver: signatures checked on their own terms, failures on demand."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from bridge.testing.webhook_receiver import WebhookReceiver, sign, signature_valid

from .tiny_bridge import run

SECRET = "whsec-test-secret"


def post(url: str, payload: Any, signature: str | None) -> tuple[int, Any]:
    body = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["X-Bridge-Signature"] = signature
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


async def apost(
    url: str, payload: Any, secret: str | None = SECRET, t: int | None = None
) -> tuple[int, Any]:
    body = json.dumps(payload).encode()
    signature = None if secret is None else sign(secret, body, t)
    return await asyncio.to_thread(post, url, payload, signature)


def test_the_signature_is_hmac_sha256_over_the_timestamp_and_the_body() -> None:
    body = b'{"a": 1}'
    mac = hmac.new(SECRET.encode(), b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign(SECRET, body, 1700000000) == f"t=1700000000,v1={mac}"
    now = 1700000000 + 299
    assert signature_valid(SECRET, body, f"t=1700000000,v1={mac}", now=now)
    assert signature_valid(SECRET, body, f"t=1700000000,v1={'0' * 64},v1={mac}", now=now)
    assert not signature_valid(SECRET, body, f"t=1700000000,v1={mac}", now=now + 2)
    assert not signature_valid(SECRET, body + b" ", f"t=1700000000,v1={mac}", now=now)
    assert not signature_valid(SECRET, body, f"t=1700000001,v1={mac}", now=now)
    for broken in ("", f"v1={mac}", "t=1700000000", f"t=x,v1={mac}"):
        assert not signature_valid(SECRET, body, broken, now=now)


@pytest.mark.parametrize(
    ("secret", "age_s", "valid"),
    [
        (SECRET, 0, True),
        ("wrong-secret", 0, False),
        (SECRET, 301, False),
        (SECRET, -301, False),
        (None, 0, False),
    ],
    ids=["valid", "wrong-secret", "stale", "future", "unsigned"],
)
def test_reports_with_a_bad_signature_get_401(secret: str | None, age_s: int, valid: bool) -> None:
    async def scenario() -> None:
        async with WebhookReceiver(secret=SECRET) as rx:
            payload = {"call_sid": "CA" + "0" * 32, "outcome": "completed"}
            status, answer = await apost(
                rx.url("/report/calls"), payload, secret, int(time.time()) - age_s
            )
            assert status == (200 if valid else 401)
            assert answer == ({"ok": True} if valid else {"error": "invalid signature"})
            (delivery,) = rx.deliveries
            assert delivery.signature_valid is valid and delivery.status == status
            assert delivery.path == "/report/calls" and delivery.json == payload
            assert delivery.body == json.dumps(payload).encode()
            assert delivery.headers["content-type"] == "application/json"
            assert rx.delivered == ([delivery] if valid else [])

    run(scenario())


def test_fail_first_answers_500_then_the_retry_is_delivered() -> None:
    async def scenario() -> None:
        async with WebhookReceiver(secret=SECRET) as rx:
            rx.fail_first = 2
            assert (await apost(rx.url(), {"n": 0}, "wrong"))[0] == 401  # not counted
            answers = [(await apost(rx.url(), {"n": n}))[0] for n in range(1, 4)]
            assert answers == [500, 500, 200]
            delivered = await rx.wait_for(1, timeout=2)
            assert [d.json for d in delivered] == [{"n": 3}]
            assert [d.status for d in rx.deliveries] == [401, 500, 500, 200]
            assert rx.failed == 2

    run(scenario())


def test_delay_holds_the_answer_back_without_blocking_the_loop() -> None:
    async def scenario() -> None:
        async with WebhookReceiver(secret=SECRET) as rx:
            rx.delay_s = 0.5
            started = time.monotonic()
            first, second = await asyncio.gather(
                apost(rx.url(), {"n": 1}), apost(rx.url(), {"n": 2})
            )
            assert first[0] == second[0] == 200
            assert time.monotonic() - started >= 0.5
            # Both arrived before either was answered: one held answer blocks nothing.
            one, two = sorted(d.at for d in rx.deliveries)
            assert two - one < 0.5
            with pytest.raises(TimeoutError):
                await rx.wait_for(3, timeout=0.1)

    run(scenario())


def test_the_setup_webhook_answers_what_it_is_told() -> None:
    async def scenario() -> None:
        async with WebhookReceiver(secret=SECRET) as rx:
            rx.setup_answer = {"persona": "sales", "variables": {"name": "Ada"}}
            rx.setup_delay_s = 0.2
            question = {"call_sid": "CA" + "1" * 32, "from": "+15550001111", "to": "+15550002222"}
            started = time.monotonic()
            assert await apost(rx.url("/setup"), question) == (200, rx.setup_answer)
            assert time.monotonic() - started >= 0.2
            rx.setup_status, rx.setup_answer = 503, {"error": "busy"}
            assert await apost(rx.url("/setup"), question) == (503, {"error": "busy"})
            assert (await apost(rx.url("/setup"), question, "wrong"))[0] == 401
            assert [(r.status, r.signature_valid) for r in rx.setup_requests] == [
                (200, True),
                (503, True),
                (401, False),
            ]
            assert rx.setup_requests[0].json == question
            assert rx.deliveries == []

    run(scenario())
