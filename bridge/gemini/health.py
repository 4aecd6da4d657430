"""Whether calls can open Gemini right now, judged from the last session setups.

A pod whose every call ends in the apology should not be sent calls: once the
last few setups (calls' and probes') all failed, ``/ready`` says so, and the
pod is ready again after the first setup that succeeds. I/O-free and
clock-injected, so it is tested without sockets.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

FAILING_AFTER = 3  # consecutive failed setups, none succeeded since


class GeminiHealth:
    def __init__(
        self, failing_after: int = FAILING_AFTER, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._failing_after = failing_after
        self._clock = clock
        self._failures = 0
        self._last_reason = ""
        self._failing_since: float | None = None

    def on_setup(self, ok: bool, reason: str = "") -> None:
        """A Gemini session opened (``ok``) or did not, for a call or a probe."""
        if ok:
            self._failures = 0
            self._failing_since = None
            return
        self._failures += 1
        self._last_reason = reason
        if self.failing and self._failing_since is None:
            self._failing_since = self._clock()

    @property
    def failing(self) -> bool:
        return self._failures >= self._failing_after

    def status(self) -> dict[str, Any]:
        """What ``/ready`` says while failing (safe to show: setup reasons hold no secrets)."""
        since = self._failing_since
        return {
            "status": "gemini_failing",
            "detail": f"the last {self._failures} Gemini session setups failed",
            "last_error": self._last_reason,
            "failing_for_s": round(self._clock() - since, 1) if since is not None else 0.0,
        }
