"""Prometheus metrics, one registry per app so several apps (tests) never share counters."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from itertools import accumulate

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

OUTCOMES = ("completed", "drained", "failed", "gemini_unavailable", "rejected")
ADDED_LATENCY_BUCKETS = (0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1)


class FrameLatency:
    """A histogram for the per-frame path: a bisect and two additions per frame.

    prometheus_client's own takes a lock and walks its buckets in Python, ten
    times the cost, 100 times a second per call; the event loop is the only
    writer here, so plain numbers are enough. Read at scrape time.
    """

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last is +Inf
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(self.bounds, seconds)] += 1
        self.sum += seconds


class FrameMetrics(Collector):
    """What the per-frame path counts, as plain attributes, exported when scraped."""

    def __init__(self) -> None:
        self.frames_in = 0
        self.frames_out = 0
        self.added_to_gemini = FrameLatency(ADDED_LATENCY_BUCKETS)
        self.added_to_caller = FrameLatency(ADDED_LATENCY_BUCKETS)

    def collect(self) -> Iterator[Metric]:
        frames = CounterMetricFamily(
            "bridge_frames",
            "20 ms Twilio media frames: 'in' from the caller, 'out' to the caller",
            labels=["direction"],
        )
        frames.add_metric(["in"], self.frames_in)
        frames.add_metric(["out"], self.frames_out)
        yield frames
        added = HistogramMetricFamily(
            "bridge_added_latency_seconds",
            "What the bridge adds per direction: Twilio frame received → sent to Gemini, "
            "Gemini audio received → sent to Twilio (conversion included)",
            labels=["direction"],
        )
        for direction, histogram in (
            ("caller_to_gemini", self.added_to_gemini),
            ("gemini_to_caller", self.added_to_caller),
        ):
            # prometheus_client's own spelling of a bound (it has no types)
            bounds = [floatToGoString(b) for b in histogram.bounds]  # type: ignore[no-untyped-call]
            bounds.append("+Inf")
            added.add_metric(
                [direction],
                list(zip(bounds, accumulate(histogram.counts), strict=True)),
                histogram.sum,
            )
        yield added


class DroppedFrames(Collector):
    """Model audio the caller never heard, in whole 20 ms frames.

    The bridge learns of it in bytes and milliseconds, so the parts of frames
    add up here; only whole frames are exported (a frame count is an integer).
    """

    REASONS = ("cleared", "interrupted")

    def __init__(self) -> None:
        self._frames = dict.fromkeys(self.REASONS, 0.0)

    def labels(self, reason: str) -> _DroppedCount:
        return _DroppedCount(self._frames, reason)

    def collect(self) -> Iterator[Metric]:
        dropped = CounterMetricFamily(
            "bridge_frames_dropped",
            "Model audio the caller never heard, in 20 ms frames: 'cleared' from Twilio's buffer "
            "on a barge-in, 'interrupted' (the rest of an interrupted turn, never sent)",
            labels=["reason"],
        )
        for reason, frames in self._frames.items():
            dropped.add_metric([reason], int(frames))
        yield dropped


class _DroppedCount:
    """One reason's count, with the ``inc`` of a prometheus_client child."""

    def __init__(self, frames: dict[str, float], reason: str) -> None:
        self._frames, self._reason = frames, reason

    def inc(self, frames: float = 1.0) -> None:
        self._frames[self._reason] += frames


class BridgeMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.active_calls = Gauge(
            "bridge_active_calls", "Calls with an open stream now", registry=r
        )
        self.calls = Counter(
            "bridge_calls", "Streams that ended, by outcome", ["outcome"], registry=r
        )
        self.gemini_setup_seconds = Histogram(
            "bridge_gemini_setup_seconds",
            "From opening the Gemini socket to setupComplete",
            buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10),
            registry=r,
        )
        self.gemini_setup_failures = Counter(
            "bridge_gemini_setup_failures",
            "Gemini sessions that did not open",
            ["reason"],
            registry=r,
        )
        # The per-frame figures (bridge_frames, bridge_added_latency_seconds).
        self.per_frame = FrameMetrics()
        r.register(self.per_frame)
        self.interruptions = Counter(
            "bridge_interruptions", "Barge-ins that cleared the caller's playback", registry=r
        )
        self.webhooks = Counter(
            "bridge_webhook_requests", "Inbound-call webhooks, by result", ["result"], registry=r
        )
        self.stream_ends = Counter(
            "bridge_stream_ended_requests",
            "Twilio's <Connect action> requests, by what they were answered",
            ["result"],
            registry=r,
        )
        self.moves = Counter(
            "bridge_call_moves",
            "Calls picked up from another stream (a deploy, a crash, a lost stream), by how "
            "the Gemini conversation carried on",
            ["how"],
            registry=r,
        )
        self.state_store_up = Gauge(
            "bridge_state_store_up",
            "1 while the shared state store (STATE_URL) answers; 0 while this instance "
            "carries on with what it holds itself",
            registry=r,
        )
        self.call_setups = Counter(
            "bridge_call_setup_lookups",
            "CALL_SETUP_URL lookups before an inbound call: used, or failed (the number's persona)",
            ["result"],
            registry=r,
        )
        self.outbound_calls = Counter(
            "bridge_outbound_calls",
            "POST /api/calls: placed, or why not (refused, busy, twilio_error)",
            ["result"],
            registry=r,
        )
        self.call_reports = Counter(
            "bridge_call_reports",
            "Call reports: queued, delivered, failed (an attempt the receiver refused), given_up",
            ["result"],
            registry=r,
        )
        self.answering_machine = Counter(
            "bridge_answering_machine_verdicts",
            "Twilio's answering-machine verdicts on outbound calls (AnsweredBy)",
            ["answered_by"],
            registry=r,
        )
        self.recording_callbacks = Counter(
            "bridge_recording_callbacks",
            "Twilio's recording status callbacks, by status or why one was refused",
            ["status"],
            registry=r,
        )
        self.status_callbacks = Counter(
            "bridge_twilio_status_callbacks",
            "Twilio status callbacks: call statuses and stream events, or why one was refused",
            ["status"],
            registry=r,
        )
        self.stream_rejections = Counter(
            "bridge_stream_rejections", "Streams closed before a call began", ["reason"], registry=r
        )
        self.unknown_events = Counter(
            "bridge_twilio_unknown_events",
            "Twilio events of a kind this version does not know, ignored (each call logs the "
            "first one's name)",
            registry=r,
        )
        self.reconnects = Counter(
            "bridge_gemini_reconnects",
            "Gemini connections replaced mid-call, by cause and how",
            ["reason", "result"],
            registry=r,
        )
        self.reconnect_gap_seconds = Histogram(
            "bridge_gemini_reconnect_gap_seconds",
            "From losing (or leaving) a Gemini connection to the next one being ready",
            buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10),
            registry=r,
        )
        self.nudges = Counter(
            "bridge_gemini_nudges", "Stalled answers nudged with a text input", registry=r
        )
        self.prewarm = Counter(
            "bridge_gemini_prewarm",
            "Sessions opened at the webhook: used by their stream, expired, or failed",
            ["result"],
            registry=r,
        )
        self.tool_calls = Counter(
            "bridge_tool_calls",
            "Tool calls from the model, by tool and result",
            ["tool", "result"],
            registry=r,
        )
        self.greeting_seconds = Histogram(
            "bridge_greeting_seconds",
            "From the stream's start to the first greeting audio sent to the caller",
            buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5),
            registry=r,
        )
        self.turn_latency_seconds = Histogram(
            "bridge_turn_latency_seconds",
            "At the wire: the caller's last voiced frame → the first answer frame sent to Twilio",
            buckets=(0.2, 0.4, 0.6, 0.8, 1, 1.25, 1.5, 2, 3, 5, 10),
            registry=r,
        )
        self.barge_in_seconds = Histogram(
            "bridge_barge_in_seconds",
            "Gemini's interrupted received → clear sent to Twilio",
            buckets=(0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1),
            registry=r,
        )
        dropped = DroppedFrames()
        r.register(dropped)
        self.frames_cleared = dropped.labels("cleared")
        self.frames_interrupted = dropped.labels("interrupted")
        for outcome in OUTCOMES:
            self.calls.labels(outcome)
        # The standard process_* (CPU, memory, open files, start time) and python_info series.
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
