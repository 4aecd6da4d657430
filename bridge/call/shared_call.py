"""A call as the fleet shares it, and what to do when its stream ends: no I/O.

A phone call outlives any one Media Stream. Twilio's ``<Connect action>`` asks, each time
a stream ends while the call goes on, what to do next; any instance may be asked, and
any instance may receive the stream that follows. So what a new stream needs to pick
the call up lives in the shared store, in one record per call:

* ``stream``: the number of the stream that owns the call. The webhook's is 1; each
  move hands out the next. Writes are conditional on it, so an instance that lost the
  call (crashed, cut off, slow) can never overwrite what the next one wrote;
* ``status``: ANSWERED (a stream was handed out and has not started), LIVE (a stream
  carries it), RELEASED (its stream ended and the call goes on: move it), ENDED (by
  design: the caller hung up, ``end_call``, a transfer, Gemini failed);
* what the next stream resumes from: the Gemini resumption handle, the transcript,
  the answer being given and what of it was heard, whether a question waits (its
  audio is kept apart, as ``question:<CallSid>``).

``after_stream`` is the decision the ``action`` request gets, from the record and
whether the owner is alive: reconnect (a fresh ``<Connect><Stream>``), hang up, the
apology, or wait a moment (the owner has not said yet how its stream ended).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from enum import Enum, StrEnum

from .transcript import Speaker, Turn

MAX_SHARED_TURNS = 60  # of the transcript, what a new stream gets (and its summary)
MAX_SHARED_TURN_CHARS = 600


class CallStatus(StrEnum):
    ANSWERED = "answered"
    LIVE = "live"
    RELEASED = "released"
    ENDED = "ended"


class EndReason(StrEnum):
    """Why a call ended; what the caller hears next follows from it."""

    CALLER_HUNG_UP = "caller_hung_up"
    END_CALL = "end_call"
    TRANSFERRED = "transferred"
    DRAINED = "drained"  # a goodbye, then the line closed (no fleet to move to)
    GEMINI_FAILED = "gemini_failed"
    FAILED = "failed"  # the stream broke the protocol, or the bridge failed
    MOVES_EXHAUSTED = "moves_exhausted"
    NO_ROOM = "no_room"  # the only server was full or going away
    MACHINE = "machine"  # an answering machine answered an outbound call

    @property
    def apologise(self) -> bool:
        return self in (
            EndReason.GEMINI_FAILED,
            EndReason.FAILED,
            EndReason.MOVES_EXHAUSTED,
            EndReason.NO_ROOM,
        )


class ReleaseReason(StrEnum):
    """Why a stream let its call go without ending it."""

    HANDED_OVER = "handed_over"  # its server is going away (a deploy)
    STREAM_LOST = "stream_lost"  # Twilio's socket dropped without a stop
    NO_ROOM = "no_room"  # the stream reached a full or draining server


@dataclass(frozen=True, slots=True)
class SharedCall:
    call_sid: str
    caller: str
    called: str
    stream: int = 1
    status: CallStatus = CallStatus.ANSWERED
    owner: str = ""  # the instance whose stream holds it ("" while none does)
    since: float = 0.0  # wall time of the last change of stream or status
    moves: int = 0
    ended: EndReason | None = None
    released: ReleaseReason | None = None
    handle: str = ""  # Gemini's latest resumption handle
    turns: tuple[Turn, ...] = field(default_factory=tuple)
    answer_started: bool = False  # the model was giving an answer when last saved
    heard: str = ""  # ... and what of it the caller had heard (its transcription)
    question: bool = False  # unanswered caller speech is stored (as μ-law, apart)

    # --- to and from the store's string fields ------------------------------------------------

    def fields(self) -> dict[str, str]:
        return {
            "caller": self.caller,
            "called": self.called,
            "stream": str(self.stream),
            "status": self.status.value,
            "owner": self.owner,
            "since": f"{self.since:.3f}",
            "moves": str(self.moves),
            "ended": self.ended.value if self.ended else "",
            "released": self.released.value if self.released else "",
            **self.conversation_fields(),
        }

    def conversation_fields(self) -> dict[str, str]:
        """What a stream saves as the conversation goes on (never its ownership)."""
        return {
            "handle": self.handle,
            "turns": turns_json(self.turns),
            "answer_started": "1" if self.answer_started else "",
            "heard": self.heard[:MAX_SHARED_TURN_CHARS],
            "question": "1" if self.question else "",
        }

    @classmethod
    def from_fields(cls, call_sid: str, fields: dict[str, str]) -> SharedCall:
        """Raises ValueError on a record this code did not write."""
        try:
            return cls(
                call_sid=call_sid,
                caller=fields.get("caller", ""),
                called=fields.get("called", ""),
                stream=int(fields["stream"]),
                status=CallStatus(fields["status"]),
                owner=fields.get("owner", ""),
                since=float(fields.get("since") or 0),
                moves=int(fields.get("moves") or 0),
                ended=EndReason(fields["ended"]) if fields.get("ended") else None,
                released=ReleaseReason(fields["released"]) if fields.get("released") else None,
                handle=fields.get("handle", ""),
                turns=turns_from_json(fields.get("turns", "")),
                answer_started=bool(fields.get("answer_started")),
                heard=fields.get("heard", ""),
                question=bool(fields.get("question")),
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise ValueError(f"unreadable call record ({exc.__class__.__name__})") from None

    def next_stream(self, now: float) -> SharedCall:
        """Handed out again: the next stream number, nobody owning it yet."""
        return replace(
            self,
            stream=self.stream + 1,
            status=CallStatus.ANSWERED,
            owner="",
            since=now,
            moves=self.moves + 1,
            released=None,
        )


def turns_json(turns: tuple[Turn, ...]) -> str:
    kept = turns[-MAX_SHARED_TURNS:]
    return json.dumps(
        [[t.speaker.value, t.text[:MAX_SHARED_TURN_CHARS], round(t.at, 3)] for t in kept],
        ensure_ascii=False,
    )


def turns_from_json(text: str) -> tuple[Turn, ...]:
    if not text:
        return ()
    return tuple(
        Turn(Speaker(turn[0]), str(turn[1]), float(turn[2]) if len(turn) > 2 else 0.0)
        for turn in json.loads(text)
    )


# --- what an ``action`` request gets ---------------------------------------------------------


class AfterStream(Enum):
    RECONNECT = "reconnect"  # a fresh <Connect><Stream> for the call's next stream
    HANG_UP = "hang up"  # the call ended by design: nothing more to say
    APOLOGY = "apology"  # it failed, or cannot move again: say sorry, then hang up
    WAIT = "wait"  # the owner has not said how its stream ended yet: ask again shortly
    STALE = "stale"  # not about the call's current stream: a replayed request


def after_stream(
    record: SharedCall | None,
    *,
    ended_stream: int,
    owner_alive: bool,
    max_moves: int,
) -> AfterStream:
    """What Twilio is told once the call's stream ``ended_stream`` has ended (the number
    travels in the action URL, which Twilio signs). ``owner_alive``: the instance owning
    the call still answers (false for a crashed one)."""
    if record is None:
        # The store does not know the call (it restarted empty, or cannot be reached and
        # another instance answered the webhook): start it afresh rather than leave it.
        return AfterStream.RECONNECT if ended_stream <= max_moves else AfterStream.APOLOGY
    if record.stream != ended_stream:
        return AfterStream.STALE
    if record.status is CallStatus.ENDED:
        apologise = record.ended is not None and record.ended.apologise
        return AfterStream.APOLOGY if apologise else AfterStream.HANG_UP
    if record.status is CallStatus.LIVE and owner_alive:
        return AfterStream.WAIT  # the owner is about to release or end it
    # RELEASED; LIVE on a crashed instance; ANSWERED: Twilio asks only once the stream
    # ended, so this one never became the call's (refused, or it never connected). A
    # signed request for the current stream exists only once Twilio made it: no replay.
    return AfterStream.RECONNECT if record.moves < max_moves else AfterStream.APOLOGY
