"""The per-frame figures: plain counters, exported in Prometheus's format when scraped."""

from prometheus_client.parser import text_string_to_metric_families

from bridge.observability.metrics import BridgeMetrics


def test_per_frame_counts_and_latencies_are_exported_as_prometheus_would() -> None:
    metrics = BridgeMetrics()
    per_frame = metrics.per_frame
    per_frame.frames_in += 3
    per_frame.frames_out += 2
    for seconds in (0.00005, 0.0001, 0.0003, 0.004, 0.5):  # 0.0001 is on a bound: le counts it
        per_frame.added_to_gemini.observe(seconds)
    families = {f.name: f for f in text_string_to_metric_families(metrics.render().decode())}
    frames = {s.labels["direction"]: s.value for s in families["bridge_frames"].samples}
    assert frames == {"in": 3, "out": 2}
    samples = families["bridge_added_latency_seconds"].samples
    buckets = {
        s.labels["le"]: s.value
        for s in samples
        if s.name.endswith("_bucket") and s.labels["direction"] == "caller_to_gemini"
    }
    assert buckets["0.0001"] == 2 and buckets["0.0005"] == 3 and buckets["0.005"] == 4
    assert buckets["0.1"] == 4 and buckets["+Inf"] == 5
    count = [s for s in samples if s.name.endswith("_count")]
    assert {s.labels["direction"]: s.value for s in count} == {
        "caller_to_gemini": 5,
        "gemini_to_caller": 0,
    }
    total = [
        s.value
        for s in samples
        if s.name.endswith("_sum") and s.labels["direction"] == "caller_to_gemini"
    ]
    assert abs(total[0] - 0.50445) < 1e-9


def test_dropped_frames_are_whole_frames_and_the_process_series_are_there() -> None:
    metrics = BridgeMetrics()
    metrics.frames_cleared.inc(12.5)  # what was queued at Twilio: 250 ms
    metrics.frames_cleared.inc(0.75)
    metrics.frames_interrupted.inc(480 / 3 / 160 * 2.5)
    families = {f.name: f for f in text_string_to_metric_families(metrics.render().decode())}
    dropped = {
        s.labels["reason"]: s.value
        for s in families["bridge_frames_dropped"].samples
        if s.name.endswith("_total")
    }
    assert dropped == {"cleared": 13, "interrupted": 2}
    assert 'bridge_frames_dropped_total{reason="cleared"} 13.0' in metrics.render().decode()
    for name in (
        "process_resident_memory_bytes",
        "process_cpu_seconds",
        "process_open_fds",
        "process_start_time_seconds",
    ):
        assert families[name].samples[0].value > 0
