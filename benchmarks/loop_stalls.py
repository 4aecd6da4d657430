"""When a load process's event loop ran late: the benchmark's check on its own instrument.

The callers and the emulator share the machine's two cores with the server they
measure, and every time they record is taken in their event loop. When that loop
runs late (the host, or the other processes, held the cores), the frames it stamps
are late by as much, and the benchmark counts it against the server. Each load
process wakes on a short timer and notes how late each wake-up came; a step reports
the worst, so a failed step can be read as the server's tail or the load's.
"""

from __future__ import annotations

import asyncio
import time
from typing import NoReturn

PERIOD_S = 0.005  # a wake-up every 5 ms: ~200 a second, a few µs each
NOTED_S = 0.002  # later than this is noted (uvloop's timers are good to a millisecond)


class LoopStalls:
    def __init__(self) -> None:
        self._noted: list[tuple[float, float]] = []  # (when it woke, how late), monotonic

    async def run(self) -> NoReturn:
        due = time.monotonic() + PERIOD_S
        while True:
            await asyncio.sleep(PERIOD_S)
            now = time.monotonic()
            if now - due > NOTED_S:
                self._noted.append((now, now - due))
            due = now + PERIOD_S

    def take(self) -> list[tuple[float, float]]:
        """What was noted since the last call."""
        noted, self._noted = self._noted, []
        return noted


def worst_ms(noted: list[tuple[float, float]], start: float, end: float) -> float:
    """The latest wake-up between ``start`` and ``end`` (monotonic), in ms; 0 when none
    came later than ``NOTED_S``."""
    return round(max((late for at, late in noted if start <= at <= end), default=0.0) * 1000, 1)
