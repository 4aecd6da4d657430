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
        self.status_callbacks = Counter(
            "bridge_twilio_status_callbacks",
            "Twilio status callbacks: call statuses and stream events, or why one was refused",
            ["status"],
            registry=r,
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
        added = Histogram(
            "bridge_added_latency_seconds",
            "What the bridge adds per direction: Twilio frame received → sent to Gemini, "
            "Gemini audio received → sent to Twilio (conversion included)",
            ["direction"],
            buckets=(0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1),
            registry=r,
        )
        self.added_to_gemini = added.labels("caller_to_gemini")
        self.added_to_caller = added.labels("gemini_to_caller")
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
        dropped = Counter(
            "bridge_frames_dropped",
            "Model audio the caller never heard: 'cleared' from Twilio's buffer on a barge-in, "
            "'interrupted' (the rest of an interrupted turn, never sent)",
            ["reason"],
            registry=r,
        )
        self.frames_cleared = dropped.labels("cleared")
        self.frames_interrupted = dropped.labels("interrupted")
        for outcome in OUTCOMES:
            self.calls.labels(outcome)

    def render(self) -> bytes:
        return generate_latest(self.registry)
