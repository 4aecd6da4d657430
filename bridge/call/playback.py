"""What the caller has actually heard, from Twilio's mark echoes and the clock.

Twilio plays ``media`` in order from its own buffer and echoes a ``mark`` once
everything queued before it has played (or been flushed by ``clear``). That
tells the bridge whether audio is still queued at Twilio, which decides whether
a barge-in needs a ``clear``, and when a goodbye has been heard.

A mark costs a message each way through the whole stack, so there is one per
model turn, after its last frame: that is the moment that matters (the turn has
been heard). Within a turn Twilio plays in real time, so the clock says how
much is still queued; frames sent after the last mark count as playing until
their estimated end, plus a grace for the network and Twilio's own buffer
(a ``clear`` when nothing plays is harmless, a missed one is not).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

FRAME_S = 0.02
UNMARKED_GRACE_S = 0.5  # network and Twilio's buffer, beyond the real-time estimate


class PlaybackTracker:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._pending: deque[tuple[str, int]] = deque()  # (mark name, frames before it)
        self._next = 0
        self._unmarked = 0
        self._play_until = 0.0  # when Twilio's buffer runs dry, playing in real time
        self.frames_sent = 0
        self.frames_played = 0

    def on_sent(self, frames: int, *, end_of_turn: bool = False) -> str | None:
        """``frames`` more were sent; returns the name of a mark to send after them, if due."""
        if frames:
            now = self._clock()
            self._play_until = max(self._play_until, now) + frames * FRAME_S
            self.frames_sent += frames
            self._unmarked += frames
        if end_of_turn and self._unmarked:
            return self.next_mark()
        return None

    def next_mark(self, frames: int = 0) -> str:
        """Name for a mark that follows everything sent so far (and ``frames`` more)."""
        if frames:
            self.on_sent(frames)
        self._unmarked = 0
        self._next += 1
        name = f"m{self._next}"
        self._pending.append((name, self.frames_sent))
        return name

    def on_mark(self, name: str) -> None:
        """A mark echo: everything up to it left Twilio's buffer. Unknown names are ignored."""
        if not any(pending == name for pending, _ in self._pending):
            return
        while self._pending:
            pending, upto = self._pending.popleft()
            self.frames_played = upto
            if pending == name:
                break
        if not self._pending and not self._unmarked:
            self._play_until = min(self._play_until, self._clock())

    def on_clear(self) -> None:
        """Twilio flushes its buffer; its echoes of flushed marks will be ignored."""
        self._pending.clear()
        self._unmarked = 0
        self.frames_played = self.frames_sent
        self._play_until = min(self._play_until, self._clock())

    @property
    def is_playing(self) -> bool:
        if self._pending:
            return True
        return self._unmarked > 0 and self._clock() < self._play_until + UNMARKED_GRACE_S

    def runs_dry_in(self) -> float | None:
        """Seconds until ``is_playing`` turns false by the clock alone: unmarked frames
        played out, grace included. None when only a mark echo can end it, or nothing plays."""
        if self._pending or not self._unmarked:
            return None
        return max(0.0, self._play_until + UNMARKED_GRACE_S - self._clock())

    @property
    def queued_ms(self) -> int:
        """Audio still to play at Twilio: what marks have not confirmed, at most what the
        clock says is left."""
        by_marks = (self.frames_sent - self.frames_played) * 20
        by_clock = max(0.0, self._play_until - self._clock()) * 1000
        return round(min(by_marks, by_clock))
