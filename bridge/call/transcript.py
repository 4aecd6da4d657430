"""What was said on a call, from Gemini's transcription fragments, stitched into turns.

Transcripts arrive as fragments (sometimes sub-word: "Ca", "n I"), out of step
with the audio. They are joined per speaker until the other side speaks or
the model's turn ends. Bounded: a long call keeps its most recent turns.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

MAX_TURNS = 200
MAX_TURN_CHARS = 2000


class Speaker(StrEnum):
    CALLER = "caller"
    ASSISTANT = "assistant"


@dataclass(slots=True)
class Turn:
    speaker: Speaker
    text: str
    at: float = 0.0  # wall time of its first fragment (0: not known)
    carried: bool = False  # said on an earlier stream of the call (restored)


class Transcript:
    def __init__(
        self, max_turns: int = MAX_TURNS, wall_clock: Callable[[], float] = time.time
    ) -> None:
        self._wall = wall_clock
        self._turns: deque[Turn] = deque(maxlen=max_turns)
        self._open = False  # the last turn still takes fragments
        self._added = 0  # turns ever added
        self._added_at_end = 0  # ... when the model's last turn ended

    def add(self, speaker: Speaker, fragment: str) -> None:
        if not fragment:
            return
        last = self._turns[-1] if self._turns else None
        if last is not None and self._open and last.speaker == speaker:
            if len(last.text) < MAX_TURN_CHARS:
                last.text = (last.text + fragment)[:MAX_TURN_CHARS]
            return
        self._turns.append(Turn(speaker, fragment.lstrip()[:MAX_TURN_CHARS], self._wall()))
        self._open = True
        self._added += 1

    def restore(self, turns: tuple[Turn, ...]) -> None:
        """What was said on the call's earlier streams (another server's, maybe)."""
        self._turns.extend(Turn(t.speaker, t.text, t.at, carried=True) for t in turns)
        self._open = False
        self._added += len(turns)
        self._added_at_end = self._added

    def end_turn(self) -> None:
        """The model's turn is complete: the next fragment starts a new turn."""
        self._open = False
        self._added_at_end = self._added

    def open_answer(self) -> str:
        """What the model has said of the answer it has not finished."""
        return self.open_text(Speaker.ASSISTANT)

    def open_text(self, speaker: Speaker) -> str:
        """What ``speaker`` said since the model's last turn ended (the caller's fragments
        may have come in between)."""
        since = min(self._added - self._added_at_end, len(self._turns))
        recent = list(self._turns)[len(self._turns) - since :] if since else []
        return " ".join(t.text.strip() for t in recent if t.speaker == speaker)

    @property
    def turns(self) -> list[Turn]:
        return list(self._turns)

    def timed(self) -> list[dict[str, object]]:
        """Every turn kept, with the wall time it began (for the call's report)."""
        return [
            {"speaker": t.speaker.value, "text": t.text.strip(), "at": t.at} for t in self._turns
        ]

    def tail(self, n: int) -> list[dict[str, str]]:
        return [{"speaker": t.speaker, "text": t.text.strip()} for t in list(self._turns)[-n:]]

    def summary(self, max_chars: int = 4000) -> str:
        """The most recent turns as "Caller: …" / "You: …" lines, within ``max_chars``."""
        lines: list[str] = []
        used = 0
        for turn in reversed(self._turns):
            who = "Caller" if turn.speaker == "caller" else "You"
            line = f"{who}: {turn.text.strip()}"
            if used + len(line) > max_chars:
                break
            lines.append(line)
            used += len(line) + 1
        return "\n".join(reversed(lines))
