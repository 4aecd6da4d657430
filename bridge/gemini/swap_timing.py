"""When to leave a connection Gemini is retiring (``goAway``), without I/O.

``goAway`` says how long the connection has left. Swapping to a new one
costs the time of a setup; what it must not cost is an answer:

* The model generating is the one bad moment. Its answer lives on this
  connection until ``turnComplete``; cut it and the rest never comes. So
  while the model's turn is open (audio, or a tool call it waits on), wait.
* Anything else is a fine moment, the caller speaking included: the caller's
  unanswered speech is replayed on the new connection, and audio spoken
  during the swap is held and sent after it.
* Right after ``turnComplete`` Gemini sends a fresh resumption handle; the
  handle before it does not hold the turn just completed. So after a turn,
  wait (briefly) for that handle, or the resumed session would forget the
  last answer.
* The deadline wins: ``margin_s`` before it, swap whatever the model is
  doing (``FORCED``). The link then has the new connection finish the cut
  turn. Waiting past the deadline gains nothing: Gemini closes the
  connection then, and a resume needs it closed anyway.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import Enum

MARGIN_S = 1.0  # swap no later than this before Gemini's deadline
HANDLE_WAIT_S = 1.0  # after turnComplete, how long to wait for the fresh handle


class SwapDecision(Enum):
    NOT_NEEDED = "not needed"  # no goAway pending
    WAIT = "wait"  # a goAway is pending; now is not the moment
    NOW = "now"  # nothing is lost by swapping now
    FORCED = "forced"  # the deadline is near: swap, even mid-answer


class SwapTiming:
    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        *,
        margin_s: float = MARGIN_S,
        handle_wait_s: float = HANDLE_WAIT_S,
    ) -> None:
        self._clock = clock
        self._margin = margin_s
        self._handle_wait = handle_wait_s
        self.deadline: float | None = None
        self._handle_at: float | None = None
        self._turn_completed_at: float | None = None

    def go_away(self, time_left_s: float) -> None:
        self.deadline = self._clock() + max(0.0, time_left_s)

    def handle_arrived(self) -> None:
        self._handle_at = self._clock()

    def turn_completed(self) -> None:
        self._turn_completed_at = self._clock()

    def swapped(self) -> None:
        """A new connection replaced the old one: its own goAway will come in time."""
        self.deadline = None
        self._handle_at = self._turn_completed_at = None

    @property
    def _handle_is_stale(self) -> bool:
        """A turn completed after the last handle, and its fresh handle may still come."""
        completed = self._turn_completed_at
        if completed is None or (self._handle_at is not None and self._handle_at >= completed):
            return False
        return self._clock() - completed < self._handle_wait

    def decide(self, model_generating: bool) -> SwapDecision:
        if self.deadline is None:
            return SwapDecision.NOT_NEEDED
        if self._clock() >= self.deadline - self._margin:
            return SwapDecision.FORCED if model_generating else SwapDecision.NOW
        if model_generating or self._handle_is_stale:
            return SwapDecision.WAIT
        return SwapDecision.NOW
