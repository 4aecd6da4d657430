"""scripts/measure_pumps.py times real work: every frame goes through each pump."""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path
from types import ModuleType

from bridge.call.bridge import CallEnd


def load_script() -> ModuleType:
    path = Path(__file__).parent.parent / "scripts" / "measure_pumps.py"
    spec = importlib.util.spec_from_file_location("measure_pumps", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_bridge_pumps_carry_every_frame_each_way() -> None:
    script = load_script()
    up, down = script.frames(300)
    call = script.bridge_pumps(up, [])
    assert asyncio.run(call._caller_to_gemini()) is CallEnd.CALLER_HUNG_UP
    assert call._link._session._ws.sent == 300 and call._record.frames_in == 300
    call = script.bridge_pumps([], down)
    assert asyncio.run(call._gemini_to_caller()) is CallEnd.GEMINI_LOST
    assert call._ws.sent == call._record.frames_out >= 299  # the resampler's delay


def test_it_reports_each_server_each_way() -> None:
    report = load_script().measure(calls=2, count=200, repeats=1)
    assert set(report) == {"bridge", "relay+audio", "relay"}
    for figures in report.values():
        assert 0 < figures["up_us"] < figures["round_trip_us"]
