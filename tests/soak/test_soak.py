"""The soak (marked ``soak``, not in the default run): ``scripts/soak``.

A small version runs by default so the driver itself never rots.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from benchmarks.soak import SoakReport, run_soak


def check(report: SoakReport) -> None:
    print(report.as_json())
    assert report.failures == []
    assert report.short_completed == report.short_calls
    assert report.long_completed == report.long_calls
    assert report.unanswered == 0
    assert report.calls_lost_audio == 0
    assert report.server_tasks_idle_after == report.server_tasks_idle_before  # nothing leaked


@pytest.mark.e2e
def test_soak_smoke() -> None:
    report = asyncio.run(
        run_soak(short_calls=4, lanes=2, long_calls=2, long_seconds=8, fault_every_s=1.5)
    )
    check(report)
    assert sum(report.faults_injected.values()) >= 3


@pytest.mark.soak
def test_soak() -> None:
    report = asyncio.run(
        run_soak(
            short_calls=int(os.environ.get("SOAK_SHORT_CALLS", "1000")),
            lanes=int(os.environ.get("SOAK_LANES", "20")),
            long_calls=int(os.environ.get("SOAK_LONG_CALLS", "20")),
            long_seconds=float(os.environ.get("SOAK_LONG_SECONDS", "120")),
            rounds=2,
        )
    )
    Path(os.environ.get("SOAK_REPORT", "soak-report.json")).write_text(report.as_json())
    check(report)
    # The first round grows the allocator to its working size; a second, identical
    # round must not add to it (a leak would).
    first, second = report.server_rss_mb_after_round
    assert second - first < 3
