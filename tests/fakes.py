"""Test doubles shared by the unit tests."""

from __future__ import annotations


class Clock:
    """A clock the test moves by hand: ``clock.now += 0.02``."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
