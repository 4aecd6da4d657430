"""Who may start a call: the stream's token, the upgrade's signature, few places to wait."""

from __future__ import annotations

import asyncio

import pytest

from bridge.call.fleet import FleetCalls
from bridge.call.outcome import CloseCode, Rejection, StreamRejected
from bridge.call.stream_auth import StreamAuthenticator, UnauthenticatedStreams
from bridge.state import Claim, MemoryStore, StateStore
from bridge.twilio.media_streams import Start, parse_twilio_event, start_event
from bridge.twilio.security import SignatureCheck, StreamTokens

SECRET = "twilio-auth-token-123"
CALL, STREAM = "CA" + "1" * 32, "MZ" + "2" * 32


def authenticator(
    places: int = 64, *, instance: str = "a", store: StateStore | None = None
) -> tuple[StreamAuthenticator, StreamTokens]:
    tokens = StreamTokens(SECRET, instance)
    check = SignatureCheck(SECRET, "https://b.example.com")
    fleet = FleetCalls(store or MemoryStore(), instance, max_moves=5)
    return StreamAuthenticator(check, tokens, fleet, UnauthenticatedStreams(places)), tokens


class StoreAway(MemoryStore):
    """A shared store that cannot be reached: claims are answered by this process alone
    (as FallbackStore answers them while Redis is away)."""

    @property
    def shared(self) -> bool:
        return True

    async def claim(self, key: str, ttl_s: float) -> Claim:
        first = await super().claim(key, ttl_s)
        return Claim.FIRST_HERE if first is Claim.FIRST else first


def admit(auth: StreamAuthenticator, event: Start) -> None:
    asyncio.run(auth.spend(auth.check_start(event)))


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
        admit(auth, event)
    return info.value


def test_a_good_token_starts_the_call_once() -> None:
    auth, tokens = authenticator()
    token = tokens.mint(CALL, "+1415", "+1800")
    admit(auth, start(token))
    again = refusal(auth, start(token))
    assert again.reason == "stream token already used" and again.code == CloseCode.POLICY


def test_a_token_spent_on_one_instance_is_spent_on_every_instance_of_the_fleet() -> None:
    shared = MemoryStore()  # one store both instances see (Redis, in a fleet)
    here, tokens = authenticator(instance="a", store=shared)
    there, _ = authenticator(instance="b", store=shared)
    token = tokens.mint(CALL, "+1415", "+1800")
    admit(there, start(token))  # minted on a, used on b: fine
    assert refusal(here, start(token)).reason == "stream token already used"


def test_while_the_store_is_away_only_the_minting_instance_accepts_its_tokens() -> None:
    """A token minted elsewhere cannot be checked: refused, with a try-again close (the call
    gets a new stream through its action request); one minted here is checked here."""
    away = StoreAway()
    here, mine = authenticator(instance="a", store=away)
    _, theirs = authenticator(instance="b", store=away)
    foreign = refusal(here, start(theirs.mint(CALL, "+1415", "+1800")))
    assert foreign.code == CloseCode.TRY_AGAIN and foreign.rejection is Rejection.UNCHECKABLE
    token = mine.mint(CALL, "+1415", "+1800")
    admit(here, start(token))
    assert refusal(here, start(token)).reason == "stream token already used"


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
