"""When /ready says Gemini is failing: the last setups all failed, until one succeeds."""

from bridge.gemini.health import GeminiHealth
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


def test_one_personas_broken_setup_does_not_keep_the_pod_unready() -> None:
    import asyncio

    from bridge.gemini.watch import GeminiWatch, ProbeResult

    results = [ProbeResult("every number", True, "ok"), ProbeResult("+1415", False, "1008")]

    async def probe() -> list[ProbeResult]:
        return results

    async def scenario() -> bool:
        watch = GeminiWatch(probe, reprobe_interval_s=0.01)
        for _ in range(3):
            watch.on_call_setup(False, "closed 1011")
        assert watch.health.failing
        await asyncio.sleep(0.1)  # a re-probe: the default setup opens again
        failing = watch.health.failing
        await watch.close()
        return failing

    assert asyncio.run(scenario()) is False
    results[0] = ProbeResult("every number", False, "1011")
    assert asyncio.run(scenario()) is True  # none opens: still failing
