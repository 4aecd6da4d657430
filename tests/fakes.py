"""Test doubles shared by the unit tests."""

from __future__ import annotations

import contextlib
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import numpy as np
from hypothesis import strategies as st

from bridge.audio import pcm16_to_ulaw
from bridge.call.turn_state import TurnState
from bridge.observability.logs import JsonFormatter

VOICE = (np.sin(np.arange(320) / 3) * 5000).astype("<i2").tobytes()  # 20 ms at 16 kHz
QUIET = bytes(640)


class Clock:
    """A clock the test moves by hand: ``clock.now += 0.02``."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def feed(state: TurnState, clock: Clock, frame: bytes, n: int) -> None:
    """``n`` 20 ms caller frames of ``frame`` (16 kHz PCM), as the bridge hands them over."""
    for _ in range(n):
        clock.now += 0.02
        half_rate = np.frombuffer(frame, dtype="<i2")[::2].tobytes()  # a rough 8 kHz copy
        state.on_caller_frame(pcm16_to_ulaw(half_rate), frame)


def one_character_off(text: str, chars: str) -> st.SearchStrategy[str]:
    """``text`` with one of ``chars`` put in at, or in place of, any one position: how the
    protocols' fast paths are held to reading a message as their general paths do."""
    return st.builds(
        lambda at, char, insert: text[:at] + char + text[at + (0 if insert else 1) :],
        st.integers(0, len(text) - 1),
        st.sampled_from(chars),
        st.booleans(),
    )


@contextlib.contextmanager
def json_log_lines(level: int = logging.INFO) -> Iterator[list[dict[str, Any]]]:
    """The JSON log lines written while inside, as the production formatter writes them
    (formatted at once, so each line carries the call it was logged in); parsed on exit."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter([]))
    root = logging.getLogger()
    root.addHandler(handler)
    previous, root.level = root.level, level
    lines: list[dict[str, Any]] = []
    try:
        yield lines
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)
        lines.extend(json.loads(line) for line in stream.getvalue().splitlines())
