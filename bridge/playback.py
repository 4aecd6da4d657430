"""What the caller has actually heard, from Twilio's mark echoes.

Twilio plays ``media`` in order from its own buffer and echoes a ``mark``
once everything queued before it has played (or been flushed by ``clear``).
That tells the bridge whether audio is still queued at Twilio, which decides
whether a barge-in needs a ``clear``, and when a goodbye has been heard.

A mark costs a message each way, so there is not one per chunk: one when
nothing else is outstanding, then one per 100 ms of audio at most, and always
one at the end of the model's turn. Frames sent after the last mark count as
still playing; a ``clear`` when nothing plays is harmless.
"""

from __future__ import annotations

from collections import deque

MARK_EVERY_FRAMES = 5  # 100 ms of audio


class PlaybackTracker:
    def __init__(self) -> None:
        self._pending: deque[tuple[str, int]] = deque()  # (mark name, frames before it)
        self._next = 0
        self._unmarked = 0
        self.frames_sent = 0
        self.frames_played = 0

    def on_sent(self, frames: int, *, end_of_turn: bool = False) -> str | None:
        """``frames`` more were sent; returns the name of a mark to send after them, if due."""
        self.frames_sent += frames
        self._unmarked += frames
        if not self._unmarked:
            return None
        if self._pending and self._unmarked < MARK_EVERY_FRAMES and not end_of_turn:
            return None
        return self.next_mark()

    def next_mark(self, frames: int = 0) -> str:
        """Name for a mark that follows everything sent so far (and ``frames`` more)."""
        self.frames_sent += frames
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
                return

    def on_clear(self) -> None:
        """Twilio flushes its buffer; its echoes of flushed marks will be ignored."""
        self._pending.clear()
        self._unmarked = 0
        self.frames_played = self.frames_sent

    @property
    def is_playing(self) -> bool:
        return bool(self._pending) or self._unmarked > 0

    @property
    def queued_ms(self) -> int:
        return (self.frames_sent - self.frames_played) * 20
