from __future__ import annotations

import hashlib
import hmac

from bridge.hooks import signature_header, verify_signature

SECRET = "whsec-" + "k" * 24
BODY = b'{"call_sid":"CA1","outcome":"completed"}'


def test_the_header_is_the_documented_hmac_over_time_dot_body() -> None:
    header = signature_header(SECRET, BODY, 1_764_780_000.7)
    assert header.startswith("t=1764780000,v1=")
    expected = hmac.new(SECRET.encode(), b"1764780000." + BODY, hashlib.sha256).hexdigest()
    assert header == f"t=1764780000,v1={expected}"


def test_a_receiver_accepts_it_and_refuses_any_change() -> None:
    header = signature_header(SECRET, BODY, 1000.0)
    assert verify_signature(SECRET, header, BODY, 1000.0)
    assert not verify_signature(SECRET, header, BODY + b" ", 1000.0)
    assert not verify_signature("another-secret-of-length", header, BODY, 1000.0)
    assert not verify_signature(SECRET, header.replace("t=1000", "t=1001"), BODY, 1000.0)
    assert not verify_signature(SECRET, "v1=00", BODY, 1000.0)


def test_a_captured_request_is_refused_five_minutes_later() -> None:
    header = signature_header(SECRET, BODY, 1000.0)
    assert verify_signature(SECRET, header, BODY, 1299.0)
    assert not verify_signature(SECRET, header, BODY, 1301.0)
