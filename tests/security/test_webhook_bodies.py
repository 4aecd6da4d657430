"""Forged webhooks whose bodies are the attack: chunked, endless, or slow, sent to a real
``bridge serve`` (review item 2). The signature is checked only once the body is in,
so the body must be capped however it arrives."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from benchmarks.attacks import chunked_post
from bridge.testing.served import ServedBridge, served_bridge
from bridge.web.twilio_form import BODY_TIMEOUT_S, MAX_FORM_BYTES

pytestmark = pytest.mark.e2e

MiB = 1024 * 1024
# Each route's refusals, counted by reason.
FORM_ROUTES = {
    "/api/inbound-call": 'bridge_webhook_requests_total{{result="{}"}}',
    "/api/call-status": 'bridge_twilio_status_callbacks_total{{status="{}"}}',
}


@pytest.fixture(scope="module")
def bridge() -> Iterator[ServedBridge]:
    with served_bridge() as served:
        yield served


@pytest.mark.parametrize("path", FORM_ROUTES)
def test_a_forged_chunked_body_is_cut_off_at_the_cap(bridge: ServedBridge, path: str) -> None:
    """Review: 879 MiB chunked with a forged signature, read whole, peaked at 2.7 GiB.
    Here 48 MiB (main: read whole, then 403)."""
    too_large = FORM_ROUTES[path].format("too_large")
    refused = bridge.metric(too_large)
    baseline = bridge.rss_bytes()
    bridge.reset_peak_memory()
    result = asyncio.run(chunked_post(bridge.port, path, 48 * MiB))
    held = bridge.peak_rss_bytes() - baseline
    assert held < 4 * MiB, f"the server held {held / MiB:.1f} MiB"  # main: +51 MiB
    assert bridge.metric(too_large) == refused + 1  # answered 413...
    # ...and hung up, so the sender stopped early. Closing on unread data resets the
    # socket, which may overtake the 413 on its way to a sender that is still writing.
    assert result.answered_early and result.body_bytes_sent < 16 * MiB  # socket buffers
    assert result.status in (413, None)
    assert bridge.request("GET", "/health").status == 200


def test_a_body_that_trickles_is_timed_out(bridge: ServedBridge) -> None:
    async def trickle() -> tuple[int, float]:
        reader, writer = await asyncio.open_connection("127.0.0.1", bridge.port)
        writer.write(
            b"POST /api/inbound-call HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: 1000\r\nX-Twilio-Signature: forged\r\n\r\nCallSid="
        )
        started = time.monotonic()
        status_line = await asyncio.wait_for(reader.readuntil(b"\r\n"), BODY_TIMEOUT_S + 5)
        writer.close()
        return int(status_line.split()[1]), time.monotonic() - started

    status, waited = asyncio.run(trickle())
    assert status == 408 and BODY_TIMEOUT_S - 0.5 < waited < BODY_TIMEOUT_S + 2


def test_a_declared_length_over_the_cap_is_refused_unread(bridge: ServedBridge) -> None:
    response = bridge.request(
        "POST",
        "/api/call-status",
        headers={"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": "x"},
        body=b"a" * (MAX_FORM_BYTES + 1),
    )
    assert response.status == 413
    assert bridge.metric('bridge_twilio_status_callbacks_total{status="too_large"}') >= 1
