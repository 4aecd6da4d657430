"""Opening real Gemini sessions to see that calls will be able to: at start-up, for
``check``, and again and again while every call's setup is failing.

A probe opens a session with exactly what a call sends in ``setup`` (model,
voice, tools, the persona's prompt), waits for ``setupComplete`` within
GEMINI_SETUP_TIMEOUT and closes it. The watch owns the tasks it starts and
cancels them in ``close()``: a pod that is not ready gets no calls to learn
from, so only its own probes can make it ready again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from .endpoint import GeminiEndpoint
from .health import GeminiHealth
from .session import GeminiSession, GeminiSetupError
from .wire import SessionConfig

log = logging.getLogger(__name__)

REPROBE_INTERVAL_S = 15.0


@dataclass(frozen=True, slots=True)
class ProbeResult:
    label: str  # whose setup: "every number" or a persona's number
    ok: bool
    detail: str  # "setupComplete in 85 ms", or why not (safe to log)


async def probe_session(
    endpoint: GeminiEndpoint, label: str, config: SessionConfig, setup_timeout: float
) -> ProbeResult:
    session = GeminiSession(endpoint, config, setup_timeout=setup_timeout)
    try:
        await session.open()
    except GeminiSetupError as exc:
        return ProbeResult(label, False, exc.reason)
    except Exception as exc:  # a probe must answer, whatever broke; the class names no secret
        log.exception("Gemini probe (%s) crashed", label)
        return ProbeResult(label, False, f"probe failed: {exc.__class__.__name__}")
    with contextlib.suppress(Exception):  # closing is courtesy; the answer is in
        async with asyncio.timeout(setup_timeout):
            await session.close()
    assert session.setup_seconds is not None
    return ProbeResult(label, True, f"setupComplete in {session.setup_seconds * 1000:.0f} ms")


async def probe_configs(
    endpoint: GeminiEndpoint, configs: Mapping[str, SessionConfig], setup_timeout: float
) -> list[ProbeResult]:
    """One session per distinct setup, at once."""
    return list(
        await asyncio.gather(
            *(probe_session(endpoint, label, c, setup_timeout) for label, c in configs.items())
        )
    )


Probe = Callable[[], Awaitable[list[ProbeResult]]]


class GeminiWatch:
    def __init__(
        self,
        probe: Probe,
        health: GeminiHealth | None = None,
        reprobe_interval_s: float = REPROBE_INTERVAL_S,
    ) -> None:
        self.health = health or GeminiHealth()
        self.reprobe_interval_s = reprobe_interval_s
        self._probe = probe
        self._tasks: set[asyncio.Task[None]] = set()
        self._reprobing: asyncio.Task[None] | None = None

    async def probe(self) -> list[ProbeResult]:
        """One probe of every setup, now (``check``)."""
        return await self._probe()

    def on_call_setup(self, ok: bool, reason: str = "") -> None:
        """A call's Gemini session opened, or did not."""
        self.health.on_setup(ok, reason)
        if self.health.failing and (self._reprobing is None or self._reprobing.done()):
            log.error(
                "Gemini is failing: the last calls could not open a session (%s); /ready says "
                "503 until a probe succeeds (every %.0f s)",
                reason,
                self.reprobe_interval_s,
            )
            self._reprobing = self._own(self._reprobe(), "gemini_reprobe")

    def probe_at_start(self) -> None:
        """Warn (never refuse) if Gemini cannot be reached now: it may come back."""
        self._own(self._probe_at_start(), "gemini_probe_at_start")

    async def _probe_at_start(self) -> None:
        results = await self._probe()
        for result in results:
            if result.ok:
                log.info("Gemini check (%s): %s", result.label, result.detail)
            else:
                log.warning(
                    "Gemini check (%s) failed: %s. Calls will hear the apology until it works; "
                    "run `gemini-phone-bridge check` for details",
                    result.label,
                    result.detail,
                )
        self._record(results)

    async def _reprobe(self) -> None:
        while self.health.failing:
            await asyncio.sleep(self.reprobe_interval_s)
            results = await self._probe()
            self._record(results)
            if self.health.failing:
                failed = next(r for r in results if not r.ok)
                log.warning("Gemini still failing (%s): %s", failed.label, failed.detail)
        log.info("Gemini works again: ready for calls")

    def _record(self, results: list[ProbeResult]) -> None:
        """Gemini works if any setup opens: one persona's broken setup fails its own calls
        (the start-up check names it), it must not keep the whole pod from all calls."""
        failed = [r for r in results if not r.ok]
        works = len(failed) < len(results)
        self.health.on_setup(works, "" if works else failed[0].detail)

    def _own(self, coro: Awaitable[None], name: str) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
