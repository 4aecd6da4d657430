"""The registry behind /api/calls/stats."""

from bridge.call.registry import CallRegistry, mask_number


def test_numbers_are_masked() -> None:
    assert mask_number("+14155550123") == "+*******0123"
    assert mask_number("client:alice") == "********lice"
    assert mask_number("") == ""
    assert mask_number("12345") == "*****"
    assert "4155550" not in mask_number("+14155550123")


def test_totals_and_active_calls() -> None:
    registry = CallRegistry()
    a = registry.begin("CA1", "MZ1", "+14155550123")
    b = registry.begin("CA2", "MZ2", "+14155550124")
    a.frames_in = 50
    snap = registry.snapshot()
    assert snap["totals"] == {"active": 2, "handled": 2, "completed": 0, "failed": 0}
    (first, _) = snap["active_calls"]
    assert (
        first["call_sid"] == "CA1"
        and first["caller"] == "+*******0123"
        and first["frames_in"] == 50
    )
    assert first["gemini_state"] == "connecting" and first["started_at"].endswith("Z")
    registry.end(a, completed=True)
    registry.end(b, completed=False)
    registry.end(b, completed=False)  # ending twice counts once
    assert registry.snapshot()["totals"] == {"active": 0, "handled": 2, "completed": 1, "failed": 1}
