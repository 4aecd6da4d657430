"""What Twilio's action request gets, from the call's record alone (no I/O)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bridge.call.shared_call import (
    AfterStream,
    CallStatus,
    EndReason,
    ReleaseReason,
    SharedCall,
    after_stream,
)
from bridge.call.transcript import Speaker, Turn

LIVE = SharedCall(
    "CA1", "+14155550123", "+14155550100", stream=2, status=CallStatus.LIVE, owner="web-1",
    moves=1,
)  # fmt: skip


def decide(record: SharedCall | None, ended: int = 2, *, alive: bool = False) -> AfterStream:
    return after_stream(record, ended_stream=ended, owner_alive=alive, max_moves=3)


def test_a_released_call_moves_and_a_live_one_on_a_crashed_server_too() -> None:
    released = replace(LIVE, status=CallStatus.RELEASED, released=ReleaseReason.HANDED_OVER)
    assert decide(released) is AfterStream.RECONNECT
    assert decide(released, alive=True) is AfterStream.RECONNECT
    assert decide(LIVE, alive=False) is AfterStream.RECONNECT  # crashed: nobody will say
    assert decide(LIVE, alive=True) is AfterStream.WAIT  # its owner is about to say


def test_a_stream_that_never_became_the_call_s_is_handed_out_again() -> None:
    answered = replace(LIVE, status=CallStatus.ANSWERED, owner="")
    assert decide(answered) is AfterStream.RECONNECT


def test_a_request_about_another_stream_is_a_replay() -> None:
    assert decide(LIVE, ended=1) is AfterStream.STALE
    assert decide(LIVE, ended=3) is AfterStream.STALE


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        (EndReason.CALLER_HUNG_UP, AfterStream.HANG_UP),
        (EndReason.END_CALL, AfterStream.HANG_UP),
        (EndReason.TRANSFERRED, AfterStream.HANG_UP),
        (EndReason.DRAINED, AfterStream.HANG_UP),
        (EndReason.GEMINI_FAILED, AfterStream.APOLOGY),
        (EndReason.FAILED, AfterStream.APOLOGY),
        (EndReason.NO_ROOM, AfterStream.APOLOGY),
    ],
)
def test_a_call_ended_by_design_is_never_revived(reason: EndReason, expected: AfterStream) -> None:
    ended = replace(LIVE, status=CallStatus.ENDED, ended=reason)
    assert decide(ended, alive=True) is expected
    assert decide(ended, alive=False) is expected


def test_moves_are_bounded_then_the_apology() -> None:
    released = replace(LIVE, status=CallStatus.RELEASED, moves=3)
    assert decide(released) is AfterStream.APOLOGY


def test_an_unknown_call_starts_afresh_within_the_bound() -> None:
    assert decide(None, ended=1) is AfterStream.RECONNECT
    assert decide(None, ended=4) is AfterStream.APOLOGY


def test_the_record_survives_the_store_s_strings() -> None:
    record = replace(
        LIVE,
        handle="h-123",
        turns=(Turn(Speaker.CALLER, "Où est ma commande ?"), Turn(Speaker.ASSISTANT, "Ici.")),
        answer_started=True,
        heard="Your order",
        question=True,
        since=1234.5,
    )
    assert SharedCall.from_fields("CA1", record.fields()) == record
    with pytest.raises(ValueError, match="unreadable call record"):
        SharedCall.from_fields("CA1", {"stream": "two", "status": "live"})


def test_the_next_stream_is_nobody_s_until_it_starts() -> None:
    moved = replace(LIVE, status=CallStatus.RELEASED, released=ReleaseReason.STREAM_LOST)
    moved = moved.next_stream(now=99.0)
    assert (moved.stream, moved.status, moved.owner, moved.moves) == (3, CallStatus.ANSWERED, "", 2)
    assert moved.released is None and moved.since == 99.0
