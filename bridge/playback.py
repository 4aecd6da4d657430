"""What the caller has actually heard, from Twilio's mark echoes.

Twilio plays ``media`` in order from its own buffer and echoes a ``mark``
once everything queued before it has played (or been flushed by ``clear``).
One mark follows each model chunk, so the bridge knows whether audio is still
queued at Twilio, which decides whether a barge-in needs a ``clear``.
"""

from __future__ import annotations

from collections import deque


class PlaybackTracker:
    def __init__(self) -> None:
        self._pending: deque[tuple[str, int]] = deque()  # (mark name, frames before it)
        self._next = 0
        self.frames_sent = 0
        self.frames_played = 0

    def next_mark(self, frames: int) -> str:
        """Name for a mark that follows ``frames`` newly sent frames."""
        self._next += 1
        name = f"m{self._next}"
        self.frames_sent += frames
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
                return

    def on_clear(self) -> None:
        """Twilio flushes its buffer; its echoes of flushed marks will be ignored."""
        self._pending.clear()
        self.frames_played = self.frames_sent

    @property
    def is_playing(self) -> bool:
        return bool(self._pending)

    @property
    def queued_ms(self) -> int:
        return (self.frames_sent - self.frames_played) * 20
