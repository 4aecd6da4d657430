"""scripts/measure_pumps.py times real work: a whole call, built as the server builds it,
carries every frame each way."""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path
from types import ModuleType


def load_script() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "scripts" / "measure_pumps.py"
    spec = importlib.util.spec_from_file_location("measure_pumps", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_call_carries_every_frame_each_way() -> None:
    script = load_script()
    up, down = script.frames(300)
    call, twilio, gemini = script.bridge_call(up, [])
    asyncio.run(call.run())
    assert gemini.sent == 1 + 300  # setup, then every frame
    call, twilio, gemini = script.bridge_call([], down)
    asyncio.run(call.run())
    assert twilio.sent >= 299  # every echo's frames (the resampler's delay holds one back)


def test_it_reports_each_server_each_way() -> None:
    report = load_script().measure(calls=2, count=200, repeats=1)
    assert set(report) == {"bridge", "relay+audio", "relay"}
    for figures in report.values():
        assert 0 < figures["up_us"] < figures["round_trip_us"]
