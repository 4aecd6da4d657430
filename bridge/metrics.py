"""Prometheus metrics, one registry per app so several apps (tests) never share counters."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

OUTCOMES = ("completed", "drained", "failed", "gemini_unavailable", "rejected")


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
        frames = Counter(
            "bridge_frames",
            "20 ms Twilio media frames: 'in' from the caller, 'out' to the caller",
            ["direction"],
            registry=r,
        )
        # Bound once: the per-frame path must not look up label values.
        self.frames_in = frames.labels("in")
        self.frames_out = frames.labels("out")
        self.interruptions = Counter(
            "bridge_interruptions", "Barge-ins that cleared the caller's playback", registry=r
        )
        self.webhooks = Counter(
            "bridge_webhook_requests", "Inbound-call webhooks, by result", ["result"], registry=r
        )
        self.stream_rejections = Counter(
            "bridge_stream_rejections", "Streams closed before a call began", ["reason"], registry=r
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
        for outcome in OUTCOMES:
            self.calls.labels(outcome)

    def render(self) -> bytes:
        return generate_latest(self.registry)
