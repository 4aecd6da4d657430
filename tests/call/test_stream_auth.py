"""Who may start a call: the stream's token, the upgrade's signature, few places to wait."""

from __future__ import annotations

import pytest

from bridge.call.outcome import CloseCode, Rejection, StreamRejected
from bridge.call.stream_auth import StreamAuthenticator, UnauthenticatedStreams
from bridge.twilio.media_streams import Start, parse_twilio_event, start_event
from bridge.twilio.security import SignatureCheck, StreamTokens

SECRET = "twilio-auth-token-123"
CALL, STREAM = "CA" + "1" * 32, "MZ" + "2" * 32


def authenticator(places: int = 64) -> tuple[StreamAuthenticator, StreamTokens]:
    tokens = StreamTokens(SECRET)
    check = SignatureCheck(SECRET, "https://b.example.com")
    return StreamAuthenticator(check, tokens, UnauthenticatedStreams(places)), tokens


def start(token: str, **parameters: str) -> Start:
    params = {"callSid": CALL, "from": "+1415", "to": "+1800", "token": token, **parameters}
    event = parse_twilio_event(
        start_event(
            stream_sid=STREAM, call_sid=CALL, account_sid="AC" + "0" * 32, custom_parameters=params
        )
    )
    assert isinstance(event, Start)
    return event


def refusal(auth: StreamAuthenticator, event: Start) -> StreamRejected:
    with pytest.raises(StreamRejected) as info:
        auth.check_start(event)
    return info.value


def test_a_good_token_starts_the_call_once() -> None:
    auth, tokens = authenticator()
    token = tokens.mint(CALL, "+1415", "+1800")
    auth.check_start(start(token))
    again = refusal(auth, start(token))
    assert again.reason == "stream token already used" and again.code == CloseCode.POLICY


def test_tokens_bound_to_another_call_or_malformed_are_unauthenticated() -> None:
    auth, tokens = authenticator()
    other = tokens.mint("CA" + "9" * 32, "+1415", "+1800")
    assert refusal(auth, start(other)).reason == "stream token does not match this call"
    bad = refusal(auth, start("1.é"))
    assert bad.reason == "malformed stream token" and bad.rejection is Rejection.UNAUTHENTICATED
    moved = refusal(auth, start(tokens.mint(CALL, "+1415", "+1800"), callSid="CA" + "3" * 32))
    assert moved.reason == "stream parameters belong to another call"


def test_an_upgrade_signature_when_present_must_be_valid() -> None:
    auth, _ = authenticator()
    auth.check_upgrade("/voice-stream", None)  # Twilio does not always sign upgrades
    with pytest.raises(StreamRejected):
        auth.check_upgrade("/voice-stream", "forged")


def test_streams_waiting_for_start_take_places_up_to_the_limit() -> None:
    auth, _ = authenticator(places=2)
    auth.take_place()
    auth.take_place()
    with pytest.raises(StreamRejected) as info:
        auth.take_place()
    assert info.value.rejection is Rejection.TOO_MANY_UNAUTHENTICATED
    assert info.value.code == CloseCode.TRY_AGAIN
    auth.leave_place()
    auth.take_place()
