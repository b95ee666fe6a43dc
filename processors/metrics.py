"""Processor metrics; names are stable and documented in docs/metrics.md."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from evi.metrics import LATENCY_BUCKETS

LABELS = ("kind", "model")

FRAMES = Counter("evi_processor_frames_total", "Frames inferred with a result produced", LABELS)
DROPPED = Counter(
    "evi_processor_frames_dropped_total", "Frames skipped without a result", (*LABELS, "reason")
)
DEAD_LETTERS = Counter(
    "evi_processor_dead_letters_total",
    "Bad frames sent to the dead-letter topic",
    (*LABELS, "reason"),
)
INFER_SECONDS = Histogram(
    "evi_processor_inference_seconds", "Model inference time per frame", LABELS,
    buckets=LATENCY_BUCKETS,
)
E2E_SECONDS = Histogram(
    "evi_processor_end_to_end_seconds", "Capture to result produced", LABELS,
    buckets=LATENCY_BUCKETS,
)
BATCH_FRAMES = Histogram(
    "evi_processor_batch_frames", "Frames per micro-batch taken from the stream", LABELS,
    buckets=(1, 2, 4, 8, 16, 32, 64, 128),
)
