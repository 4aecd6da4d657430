"""What every test shares: the logs of the servers it ran, shown when it fails."""

from __future__ import annotations

import time
from collections.abc import Generator

import pytest

from bridge.testing.served import log_tails

_began: dict[str, float] = {}


def pytest_runtest_logstart(nodeid: str, location: tuple[str, int | None, str]) -> None:
    _began[nodeid] = time.monotonic()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A server runs in a process of its own and its log goes with its temporary
    directory: a failure only its log explains (in CI, say) would be lost without this."""
    report = yield
    if report.failed:
        for label, tail in log_tails(since=_began.get(item.nodeid, 0.0)):
            report.sections.append((label, tail))
    return report
