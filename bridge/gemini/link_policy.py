"""When a call's link to Gemini changes connections, decided without I/O.

The link (``link.py``) only moves bytes and time; every decision about *when* lives here,
in small clock-injected objects tested without sockets:

* ``SwapTiming``: when to leave a connection Gemini is retiring (``goAway``);
* ``Backoff``: how long to wait between attempts to reconnect, inside a budget;
* ``StallWatch``: when a caller waiting for an answer gets a nudge, and when the
  connection is given up as stalled.

``SwapTiming``: ``goAway`` says how long the connection has left. Swapping to a new one
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

import dataclasses
import random
import time
from collections.abc import Callable
from enum import Enum


@dataclasses.dataclass(frozen=True)
class LinkPolicy:
    reconnect_budget_s: float = 5.0
    first_backoff_s: float = 0.1
    max_backoff_s: float = 1.5
    stall_timeout_s: float = 6.0  # caller finished, no model audio: nudge; twice: reconnect
    supervise_every_s: float = 0.1  # while a goAway waits for its moment
    idle_check_s: float = 1.0  # otherwise; a stall's deadline is slept to exactly


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


class Backoff:
    """Jittered exponential delays (×0.5–1.5 around 0.1 s doubling, capped) between
    reconnect attempts, and none once the next would end past the deadline."""

    def __init__(
        self,
        policy: LinkPolicy,
        deadline: float,
        rng: random.Random,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._policy = policy
        self.deadline = deadline
        self._rng = rng
        self._clock = clock
        self._delay = policy.first_backoff_s

    def next_pause(self) -> float | None:
        """The pause before the next attempt, or None when the budget would run out first."""
        pause = self._delay * self._rng.uniform(0.5, 1.5)
        if self._clock() + pause >= self.deadline:
            return None
        self._delay = min(self._delay * 2, self._policy.max_backoff_s)
        return pause


class StallAction(Enum):
    NONE = "none"
    NUDGE = "nudge"  # remind the model, with a short text, that the caller waits
    REPLACE = "stall"  # the nudge did not help: a new connection, the question replayed


class StallWatch:
    """The known Gemini stall: the caller finished, no answer comes. A nudge after
    ``stall_timeout_s``; as long again without an answer, a new connection."""

    def __init__(self, policy: LinkPolicy) -> None:
        self._policy = policy
        self.nudged_at: float | None = None

    def decide(self, waiting_since: float | None, now: float) -> StallAction:
        if waiting_since is None:
            self.nudged_at = None
            return StallAction.NONE
        stall = self._policy.stall_timeout_s
        if self.nudged_at is None:
            if now - waiting_since < stall:
                return StallAction.NONE
            self.nudged_at = now
            return StallAction.NUDGE
        return StallAction.REPLACE if now - self.nudged_at >= stall else StallAction.NONE

    def check_in(self, waiting_since: float | None, now: float, go_away_pending: bool) -> float:
        """Seconds until the next look. Polling every call ten times a second would cost
        CPU for nothing (docs/performance.md); only a pending goAway needs it."""
        policy = self._policy
        if go_away_pending:
            return policy.supervise_every_s
        if waiting_since is None:
            return policy.idle_check_s
        due = (self.nudged_at if self.nudged_at is not None else waiting_since) + (
            policy.stall_timeout_s
        )
        return min(policy.idle_check_s, max(policy.supervise_every_s, due - now))

    def reset(self) -> None:
        """A new connection: the question was sent again, the watch starts over."""
        self.nudged_at = None
