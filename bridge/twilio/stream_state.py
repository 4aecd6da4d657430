"""One Media Stream as the bridge sees it, without I/O: the order Twilio's events come in.

    connected (once) → start (once) → media | mark | dtmf … → stop

Before ``start`` a stream is anyone's (its token is in ``start``), so it may send one
``connected``, ``start``, frames no bigger than a ``start`` can be, and a few events of
kinds this version does not know; anything else ends it before it is parsed any further.
After ``start``, an event of an unknown kind is ignored (Twilio adds events and says to
ignore what one does not know) and counted; a second ``start`` ends the stream.

The I/O layer hands frames before ``start`` to ``before_start`` and, after it, every
event but ``media`` (the one event of the per-frame path) to ``after_start``.
"""

from __future__ import annotations

from enum import Enum

from .media_streams import (
    Connected,
    ProtocolError,
    Start,
    Stop,
    TwilioEvent,
    UnknownEvent,
    parse_twilio_event,
)

# A 'start' with the webhook's four <Parameter>s (each under 500 characters) is under 3 KB.
MAX_FRAME_BEFORE_START = 8 * 1024
UNKNOWN_EVENTS_BEFORE_START = 4  # ignored before start; a few, not a flood


class StreamPhase(Enum):
    CONNECTING = "connecting"  # waiting for start
    STARTED = "started"
    STOPPED = "stopped"


class Violation(Enum):
    """How a stream broke the protocol (the call decides the close code)."""

    MALFORMED = "malformed"  # not a frame of the protocol at all
    TOO_BIG = "too big"  # a frame before start bigger than a start can be
    OUT_OF_ORDER = "out of order"  # an event before start that may not come before it
    REPEATED_START = "repeated start"


class StreamViolation(ProtocolError):
    def __init__(self, reason: str, violation: Violation) -> None:
        super().__init__(reason)
        self.violation = violation


class TwilioStream:
    def __init__(
        self,
        *,
        max_frame_before_start: int = MAX_FRAME_BEFORE_START,
        unknown_events_before_start: int = UNKNOWN_EVENTS_BEFORE_START,
    ) -> None:
        self.phase = StreamPhase.CONNECTING
        self._max_frame = max_frame_before_start
        self._unknown_allowed = unknown_events_before_start
        self._connected = False
        self.unknown_events = 0  # of kinds this version does not know, ignored
        self.first_unknown: str | None = None  # the first one's name, for the log

    def _ignore(self, event: UnknownEvent) -> None:
        self.unknown_events += 1
        if self.first_unknown is None:
            self.first_unknown = event.name

    def before_start(self, frame: str | bytes) -> Start | None:
        """The ``start`` this frame is, or None to wait for the next frame."""
        if len(frame) > self._max_frame:
            raise StreamViolation(
                f"frame of {len(frame)} bytes before 'start' (at most {self._max_frame})",
                Violation.TOO_BIG,
            )
        try:
            event = parse_twilio_event(frame)
        except ProtocolError as exc:
            raise StreamViolation(f"malformed frame: {exc}", Violation.MALFORMED) from None
        if isinstance(event, Start):
            self.phase = StreamPhase.STARTED
            return event
        if isinstance(event, Connected) and not self._connected:
            self._connected = True
            return None
        if isinstance(event, UnknownEvent) and self.unknown_events < self._unknown_allowed:
            self._ignore(event)
            return None
        raise StreamViolation(
            f"'{type(event).__name__.lower()}' event before 'start'", Violation.OUT_OF_ORDER
        )

    def after_start(self, event: TwilioEvent) -> TwilioEvent | None:
        """The event to act on, or None when there is nothing to do (an unknown kind, a
        late ``connected``)."""
        if isinstance(event, UnknownEvent):
            self._ignore(event)
            return None
        if isinstance(event, Start):
            raise StreamViolation("second 'start' on one stream", Violation.REPEATED_START)
        if isinstance(event, Stop):
            self.phase = StreamPhase.STOPPED
        elif isinstance(event, Connected):
            return None
        return event
