"""How a call ends, as values: its outcome, why a stream was refused, the close codes.

These are labels operators read (``bridge_calls_total{outcome}``,
``bridge_stream_rejections_total{reason}``, the stats API), so they are enums whose values
are the labels, never strings pieced together from a log message.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum


class CallOutcome(StrEnum):
    """A stream's end, the ``outcome`` of ``bridge_calls_total``."""

    COMPLETED = "completed"  # the caller hung up, or the assistant ended the call
    DRAINED = "drained"  # the server ended it (shutdown) with a spoken goodbye
    MOVED = "moved"  # the call went on on another stream (a deploy, a lost stream)
    FAILED = "failed"  # Gemini was lost mid-call, the stream broke, or the bridge failed
    GEMINI_UNAVAILABLE = "gemini_unavailable"  # no Gemini session at the start: the apology
    REJECTED = "rejected"  # never became a call (no token, no room, bad frames before start)

    @property
    def counts_as_completed(self) -> bool:
        """For the totals operators watch: the call ended as a call should."""
        return self in (CallOutcome.COMPLETED, CallOutcome.DRAINED, CallOutcome.MOVED)


class Rejection(StrEnum):
    """Why a stream was closed early: the ``reason`` of ``bridge_stream_rejections_total``."""

    UNAUTHENTICATED = "unauthenticated"  # no, bad, expired or spent token; bad signature
    TOO_MANY_UNAUTHENTICATED = "too_many_unauthenticated"  # no place left to wait for 'start'
    PROTOCOL = "protocol"  # a frame that breaks the Media Streams protocol
    FLOOD = "flood"  # too many messages a second
    AUDIO_TOO_FAST = "audio_too_fast"  # audio well ahead of the wall clock
    IDLE = "idle"  # no frame for too long, or a send that never finished
    OVER_CAPACITY = "over_capacity"  # no room on this instance
    UNCHECKABLE = "uncheckable"  # a token minted elsewhere while the shared store is away
    SUPERSEDED = "superseded"  # the call has moved on to a later stream


class CloseCode(IntEnum):
    """The WebSocket close codes the bridge sends Twilio (RFC 6455)."""

    NORMAL = 1000
    PROTOCOL_ERROR = 1002
    INVALID_DATA = 1007
    POLICY = 1008
    TOO_BIG = 1009
    INTERNAL = 1011
    TRY_AGAIN = 1013


class StreamRejected(Exception):
    """The stream may not become (or stay) a call; ``reason`` is logged, ``code`` closes it,
    ``rejection`` is counted."""

    def __init__(
        self,
        reason: str,
        code: CloseCode = CloseCode.POLICY,
        rejection: Rejection = Rejection.UNAUTHENTICATED,
    ) -> None:
        super().__init__(reason)
        self.reason, self.code, self.rejection = reason, code, rejection
