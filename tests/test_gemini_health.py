"""When /ready says Gemini is failing: the last setups all failed, until one succeeds."""

from bridge.gemini_health import GeminiHealth
from tests.fakes import Clock


def test_failing_after_three_failures_in_a_row_until_one_succeeds() -> None:
    clock = Clock()
    health = GeminiHealth(clock=clock)
    health.on_setup(False, "closed 1007 API key not valid")
    health.on_setup(False, "closed 1007 API key not valid")
    assert not health.failing
    health.on_setup(True)  # one success in between starts the count again
    health.on_setup(False, "a")
    health.on_setup(False, "b")
    assert not health.failing
    health.on_setup(False, "no setupComplete within 2.5 s")
    assert health.failing
    clock.now += 12.0
    health.on_setup(False, "still down")
    assert health.status() == {
        "status": "gemini_failing",
        "detail": "the last 4 Gemini session setups failed",
        "last_error": "still down",
        "failing_for_s": 12.0,
    }
    health.on_setup(True)
    assert not health.failing
