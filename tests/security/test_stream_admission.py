"""/voice-stream before ``start``: what anyone on the internet can send to a real
``bridge serve`` without a token (review items 1, 7 and 9)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine, Iterator
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from benchmarks.attacks import client_frame, compression_burst, idle_streams, open_websocket
from bridge.call.stream_auth import MAX_UNAUTHENTICATED_STREAMS, START_TIMEOUT_S
from bridge.testing.served import ServedBridge, served_bridge
from bridge.twilio.media_streams import connected_event
from bridge.twilio.stream_state import MAX_FRAME_BEFORE_START as PRE_START_MAX_FRAME_BYTES

pytestmark = pytest.mark.e2e

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def bridge() -> Iterator[ServedBridge]:
    with served_bridge() as served:
        yield served


def run(coro: Coroutine[Any, Any, Any], timeout: float = 60) -> Any:
    async def bounded() -> Any:
        async with asyncio.timeout(timeout):
            return await coro

    return asyncio.run(bounded())


def rejections(bridge: ServedBridge, reason: str, expected: float | None = None) -> float:
    sample = f'bridge_stream_rejections_total{{reason="{reason}"}}'
    if expected is None:
        return bridge.metric(sample)
    return bridge.metric_once_settled(sample, expected)


def test_a_compressed_burst_is_refused_unread_and_costs_no_memory(bridge: ServedBridge) -> None:
    """Review: 60 sockets, 2.6 MB of permessage-deflate frames, 220 → 1,170 MiB. Here 20
    sockets send 174 KB that would inflate to 147 MB (main: +152 MiB at the peak)."""
    before = rejections(bridge, "protocol")
    baseline = bridge.rss_bytes()
    bridge.reset_peak_memory()
    burst = run(compression_burst(bridge.port, connections=20, messages=60))
    assert burst.upgraded == 20 and burst.inflated_bytes > 140 * MiB
    assert bridge.peak_rss_bytes() - baseline < 16 * MiB
    assert burst.negotiated == 0  # the server never agrees to compression...
    assert burst.close_codes == [1002] * 20  # ...and fails a compressed frame at once
    assert rejections(bridge, "protocol", before + 20) == before + 20
    assert bridge.request("GET", "/health").status == 200


def test_before_start_one_connected_then_start_in_small_frames_within_seconds(
    bridge: ServedBridge,
) -> None:
    async def attack() -> tuple[int | None, int | None, int | None, float]:
        big, chatty, silent = [await open_websocket(bridge.port) for _ in range(3)]
        await big.send(client_frame(b"x" * (PRE_START_MAX_FRAME_BYTES + 1)))
        await chatty.send(client_frame(connected_event().encode()) * 2)
        opened = time.monotonic()
        codes = await asyncio.gather(
            big.close_code(3), chatty.close_code(3), silent.close_code(START_TIMEOUT_S + 3)
        )
        waited = time.monotonic() - opened
        for ws in (big, chatty, silent):
            ws.close()
        return *codes, waited

    big, chatty, silent, waited = run(attack())
    assert big == 1009  # a frame bigger than any 'start'
    assert chatty == 1007  # a second 'connected'
    assert silent == 1008 and START_TIMEOUT_S - 0.5 < waited < START_TIMEOUT_S + 2


def test_streams_waiting_for_start_are_few_and_the_rest_refused_at_the_upgrade(
    bridge: ServedBridge,
) -> None:
    """Review: 3,000 idle sockets cost +100 MiB and were held 10 s each (main: +98.5 MiB)."""
    before = rejections(bridge, "too_many_unauthenticated")
    baseline = bridge.rss_bytes()

    async def attack() -> tuple[list[int], list[int | None], float]:
        sockets = await idle_streams(bridge.port, 10 * MAX_UNAUTHENTICATED_STREAMS)
        opened = time.monotonic()
        held = [ws for ws in sockets if ws.status == 101]
        codes = await asyncio.gather(*(ws.close_code(START_TIMEOUT_S + 3) for ws in held))
        for ws in sockets:
            ws.close()
        return [ws.status for ws in sockets], codes, time.monotonic() - opened

    statuses, codes, waited = run(attack())
    assert statuses.count(101) == MAX_UNAUTHENTICATED_STREAMS
    assert statuses.count(403) == 9 * MAX_UNAUTHENTICATED_STREAMS  # refused before any upgrade
    assert codes == [1008] * MAX_UNAUTHENTICATED_STREAMS and waited < START_TIMEOUT_S + 2
    assert bridge.rss_bytes() - baseline < 16 * MiB
    refused = before + 9 * MAX_UNAUTHENTICATED_STREAMS
    assert rejections(bridge, "too_many_unauthenticated", refused) == refused

    completed = bridge.metric('bridge_calls_total{outcome="completed"}')

    async def a_real_call_after() -> int | None:
        caller = bridge.caller()
        async with caller.dial():
            await asyncio.sleep(0.5)
        return caller.result.close_code

    assert run(a_real_call_after()) == 1000
    sample = 'bridge_calls_total{outcome="completed"}'
    assert bridge.metric_once_settled(sample, completed + 1) == completed + 1


def test_a_token_that_is_not_ascii_is_a_clean_counted_1008(bridge: ServedBridge) -> None:
    """Review: a 3.3 KB ERROR traceback per attempt, the socket dropped without a close."""
    before = rejections(bridge, "unauthenticated")

    async def attack() -> tuple[int | None, str | None]:
        caller = bridge.caller()
        await caller.fetch_twiml()
        expiry = caller.parameters["token"].partition(".")[0]
        parameters = {**caller.parameters, "token": f"{expiry}.é-ünïcode"}
        async with connect(caller.stream_url, compression=None) as ws:
            for frame in caller.start_frames(parameters):
                await ws.send(frame)
            try:
                await asyncio.wait_for(ws.recv(), 5)
            except ConnectionClosed:
                pass
            return ws.close_code, ws.close_reason

    code, reason = run(attack())
    assert code == 1008 and reason == "malformed stream token"
    assert rejections(bridge, "unauthenticated", before + 1) == before + 1
    log = bridge.log()
    assert "Traceback" not in log and "Exception in ASGI application" not in log
