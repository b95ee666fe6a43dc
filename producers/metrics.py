"""Prometheus metrics of a producer process; one registry per run (tests run several)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from evi.metrics import LATENCY_BUCKETS

ENCODE_BUCKETS = (0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128)

# Drop reasons, the `reason` label of evi_producer_frames_dropped_total.
FPS = "fps"  # over the target frame rate (never encoded)
QUEUE_FULL = "queue_full"  # oldest pending frame pushed out by a newer one (backpressure)
TOO_LARGE = "too_large"  # JPEG larger than the topic's max.message.bytes
DELIVERY = "delivery_failed"  # the broker did not take it within message.timeout.ms
SHUTDOWN = "shutdown"  # still pending when the flush timeout ran out, or refused while stopping
REASONS = (FPS, QUEUE_FULL, TOO_LARGE, DELIVERY, SHUTDOWN)


class ProducerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.captured = Counter(
            "evi_producer_frames_captured", "Frames read from sources", ["stream"], registry=r
        )
        self.produced = Counter(
            "evi_producer_frames_produced",
            "Frame records the broker acknowledged",
            ["stream", "kind"],
            registry=r,
        )
        self.dropped = Counter(
            "evi_producer_frames_dropped", "Frames dropped, by reason", ["stream", "reason"],
            registry=r,
        )
        self.bytes = Counter(
            "evi_producer_bytes", "JPEG bytes acknowledged", ["stream"], registry=r
        )
        self.capture_fps = Gauge(
            "evi_producer_capture_fps", "Frames per second read from the source", ["stream"],
            registry=r,
        )
        self.encode_seconds = Histogram(
            "evi_producer_encode_seconds", "Resize + JPEG encode time", ["stream"],
            buckets=ENCODE_BUCKETS, registry=r,
        )
        self.delivery_seconds = Histogram(
            "evi_producer_delivery_seconds", "From capture to broker acknowledgement",
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.reconnects = Counter(
            "evi_producer_source_reconnects", "Source reopen attempts after a failure",
            ["stream"], registry=r,
        )
        self.inflight_bytes = Gauge(
            "evi_producer_inflight_bytes", "Frame bytes handed to librdkafka, not yet acked",
            registry=r,
        )
        self.delivery_errors = Counter(
            "evi_producer_delivery_errors", "Frame records the broker did not take",
            ["stream", "error"], registry=r,
        )

    def init_stream(self, stream: str, kinds: list[str]) -> None:
        """Create a stream's series at 0, so dashboards and rate() see them before any event."""
        self.captured.labels(stream)
        self.bytes.labels(stream)
        self.capture_fps.labels(stream)
        self.encode_seconds.labels(stream)
        self.reconnects.labels(stream)
        for kind in kinds:
            self.produced.labels(stream, kind)
        for reason in REASONS:
            self.dropped.labels(stream, reason)

    def dropped_count(self, stream: str, reason: str) -> float:
        v = self.registry.get_sample_value(
            "evi_producer_frames_dropped_total", {"stream": stream, "reason": reason}
        )
        return v or 0.0
