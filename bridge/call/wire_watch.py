"""Deadlines on a call's two wires, checked once a second by one task.

Twilio sends a frame every 20 ms and every frame is sent on at once, so a
timer per frame (``asyncio.timeout``, dearer to arm and disarm than the frame's own
work; docs/performance.md) would be armed 150 times a second per call to catch a
fault that almost never happens. The
pumps note instead when they last heard from Twilio and when a send began;
this watch ends the call when either is overdue.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import NoReturn

from .outcome import CloseCode, Rejection, StreamRejected


class SendStalled(TimeoutError):
    """A send to Twilio or Gemini did not complete in time (the peer stopped reading)."""


class WireWatch:
    def __init__(
        self,
        idle_timeout_s: float,
        send_timeout_s: float,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._idle_timeout_s = idle_timeout_s
        self._send_timeout_s = send_timeout_s
        self._clock = clock
        self.last_frame = clock()  # any message from Twilio
        self.sending_to_gemini: float | None = None  # when the send in progress began
        self.sending_to_caller: float | None = None

    def check(self) -> None:
        now = self._clock()
        if now - self.last_frame > self._idle_timeout_s:
            raise StreamRejected(
                f"no frame from Twilio for {self._idle_timeout_s:g} s",
                CloseCode.POLICY,
                Rejection.IDLE,
            )
        for began, where in (
            (self.sending_to_gemini, "Gemini"),
            (self.sending_to_caller, "Twilio"),
        ):
            if began is not None and now - began > self._send_timeout_s:
                raise SendStalled(f"a send to {where} took over {self._send_timeout_s:g} s")

    async def run(self, period_s: float = 1.0) -> NoReturn:
        while True:
            await asyncio.sleep(period_s)
            self.check()
