"""Webhook signatures and per-stream tokens."""

from __future__ import annotations

from twilio.request_validator import RequestValidator

from bridge.twilio.security import SignatureCheck, StreamGrant, StreamTokens
from tests.fakes import Clock

TOKEN = "auth-token-123456"
PUBLIC = "https://abc.ngrok.app"
CALL = "CA" + "1" * 32


def test_signature_is_checked_against_the_public_url_not_the_host() -> None:
    check = SignatureCheck(TOKEN, PUBLIC + "/")
    params = {"CallSid": CALL, "From": "+1415"}
    url = check.url_for("/api/inbound-call")
    assert url == "https://abc.ngrok.app/api/inbound-call"
    good = RequestValidator(TOKEN).compute_signature(url, params)
    assert check.is_valid(url, params, good)
    local = RequestValidator(TOKEN).compute_signature(
        "http://127.0.0.1:8080/api/inbound-call", params
    )
    assert not check.is_valid(url, params, local)
    assert not check.is_valid(url, {**params, "From": "+1999"}, good)
    assert not check.is_valid(url, params, None)
    assert not check.is_valid(url, params, "")
    forged = RequestValidator("other-token").compute_signature(url, params)
    assert not check.is_valid(url, params, forged)


def test_query_string_is_part_of_the_signed_url() -> None:
    check = SignatureCheck(TOKEN, PUBLIC)
    assert check.url_for("/api/inbound-call", "a=1") == "https://abc.ngrok.app/api/inbound-call?a=1"


def test_websocket_upgrades_are_signed_over_wss() -> None:
    check = SignatureCheck(TOKEN, PUBLIC)
    url = check.url_for("/voice-stream", websocket=True)
    assert url == "wss://abc.ngrok.app/voice-stream"
    assert check.is_valid(url, {}, RequestValidator(TOKEN).compute_signature(url, {}))
    assert (
        SignatureCheck(TOKEN, "http://127.0.0.1:9").url_for("/x", websocket=True)
        == "ws://127.0.0.1:9/x"
    )


def test_a_token_is_good_for_its_own_call_and_stream_only() -> None:
    clock = Clock(1_000_000.0)
    tokens = StreamTokens("secret", instance="web-1", ttl_s=60, clock=clock)
    token = tokens.mint(CALL, "+1415", "+1800", stream=3)
    other_call = tokens.check(token, "CA" + "2" * 32, "+1415", "+1800")
    assert other_call == "stream token does not match this call"
    assert tokens.check(token, CALL, "+1999", "+1800") == "stream token does not match this call"
    grant = tokens.check(token, CALL, "+1415", "+1800")
    assert isinstance(grant, StreamGrant)
    assert (grant.call_sid, grant.stream, grant.minted_by) == (CALL, 3, "web-1")
    # Another instance of the same fleet (same secret) reads it the same way.
    assert (
        StreamTokens("secret", instance="web-2", clock=clock).check(token, CALL, "+1415", "+1800")
        == grant
    )
    # Claiming another stream number or minting instance breaks the MAC.
    expiry, stream, instance, mac = token.split(".")
    for forged in (f"{expiry}.4.{instance}.{mac}", f"{expiry}.{stream}.web-2.{mac}"):
        assert tokens.check(forged, CALL, "+1415", "+1800") == (
            "stream token does not match this call"
        )


def test_token_expires() -> None:
    clock = Clock(1_000_000.0)
    tokens = StreamTokens("secret", ttl_s=60, clock=clock)
    token = tokens.mint(CALL, "", "")
    clock.now += 61
    assert tokens.check(token, CALL, "", "") == "stream token expired"


def test_token_from_another_secret_or_tampered_expiry_fails() -> None:
    clock = Clock(1_000_000.0)
    token = StreamTokens("secret-a", clock=clock).mint(CALL, "", "")
    assert isinstance(StreamTokens("secret-b", clock=clock).check(token, CALL, "", ""), str)
    expiry, rest = token.split(".", 1)
    extended = f"{int(expiry) + 3600}.{rest}"
    assert isinstance(StreamTokens("secret-a", clock=clock).check(extended, CALL, "", ""), str)
    for garbage in ("", ".", "abc.def", "1.1.a." + "x" * 300, "1.1..abc", "1.x.a.b"):
        assert StreamTokens("secret-a", clock=clock).check(garbage, CALL, "", "") == (
            "malformed stream token"
        )


def test_a_token_that_is_not_ascii_is_malformed_not_a_crash() -> None:
    clock = Clock(1_000_000.0)
    tokens = StreamTokens("secret", clock=clock)
    expiry = tokens.mint(CALL, "", "").partition(".")[0]
    for token in (f"{expiry}.1.a.é-ünïcode", "١٢٣.1.a.abc", f"{expiry}.1.a.abc\udcff"):
        assert tokens.check(token, CALL, "", "") == "malformed stream token"
