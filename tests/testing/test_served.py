"""The served-server harness: what a test may rely on once ``served_bridge`` yields, and
what it shows when a test fails."""

from __future__ import annotations

import time

from bridge.testing.served import log_tails, served_bridge


def test_the_start_up_gemini_check_is_over_before_the_test_begins() -> None:
    """CI once saw a test take the start-up check's session, opened just after the server
    began serving, for its own call's: it waited on the wrong session until it timed out."""
    with served_bridge() as served:
        sessions = list(served.emulator.sessions)
        assert len(sessions) == 1  # the check's, and only it
        time.sleep(0.3)
        assert len(served.emulator.sessions) == 1


def test_a_failed_test_gets_the_log_of_every_server_that_ran_during_it() -> None:
    before = time.monotonic()
    with served_bridge() as served:
        port = served.port
        (label, running), *_ = log_tails(since=before)
        assert label == f"server :{port} (running)" and "Gemini check (" in running
    after = time.monotonic()
    (label, stopped), *_ = log_tails(since=before)
    assert label == f"server :{port} (exited 0)"  # its directory is gone: the kept end
    assert "stopped (SIGTERM)" in stopped
    assert all(label != f"server :{port} (exited 0)" for label, _ in log_tails(since=after))
