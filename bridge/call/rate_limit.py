"""A token bucket: how a stream that floods the bridge with messages is told apart."""

from __future__ import annotations

import time
from collections.abc import Callable


class TokenBucket:
    """``capacity`` messages at once, refilled at ``rate`` per second.

    Refilled only when empty: until then a message costs a compare and a
    subtraction, not a clock read (Twilio sends 50 a second per call). Over
    any span T from a full bucket it lets through at most ``capacity + rate × T``
    messages, as a bucket refilled at every message does.
    """

    def __init__(
        self, rate: float, capacity: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._rate = rate
        self._capacity = capacity
        self._tokens = capacity
        self._clock = clock
        self._last = clock()

    def take(self) -> bool:
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        now = self._clock()
        self._tokens = min(self._capacity, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True
