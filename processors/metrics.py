"""Processor metrics; names are stable and documented in docs/metrics.md."""

from __future__ import annotations

import time
from collections import deque

from prometheus_client import Counter, Gauge, Histogram

from evi.metrics import LATENCY_BUCKETS

LABELS = ("kind", "model")
# Per worker of one consumer group: a kind's FP32 and INT8 groups are told apart by model.
GROUP_LABELS = ("kind", "model")

FRAMES = Counter("evi_processor_frames_total", "Frames inferred with a result produced", LABELS)
FPS = Gauge("evi_processor_fps", "Frames inferred per second, over the last 10 s", LABELS)
DROPPED = Counter(
    "evi_processor_frames_dropped_total", "Frames skipped without a result", (*LABELS, "reason")
)
DROP_RATIO = Gauge(
    "evi_processor_drop_ratio", "Dropped ÷ inferred frames per second, over the last 10 s", LABELS
)
DEAD_LETTERS = Counter(
    "evi_processor_dead_letters_total",
    "Bad frames sent to the dead-letter topic",
    (*LABELS, "reason"),
)
QUARANTINED = Counter(
    "evi_processor_quarantined_total",
    "Frames dead-lettered as `quarantined`: a worker died with each running alone",
    LABELS,
)
SUSPECTS = Counter(
    "evi_processor_suspect_frames_total",
    "Frames run one at a time because a worker died with them in flight",
    LABELS,
)
BAD_INFLIGHT = Counter(
    "evi_processor_bad_inflight_records_total",
    "In-flight records that did not parse, ignored as if nothing had been in flight",
)
SKIPPED_BY_FAUST = Counter(
    "evi_processor_rebalance_skips_total",
    "Frames faust's stream skipped unseen at a rebalance or stop; kept uncommitted, so replayed",
    ("topic",),
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
LAG = Gauge(
    "evi_processor_lag_frames",
    "Frames not yet committed on a partition this worker is assigned: end offset − committed",
    ("kind", "model", "partition"),
)
WORKER_LAG = Gauge(
    "evi_processor_worker_lag_frames", "Sum of evi_processor_lag_frames over this worker",
    GROUP_LABELS,
)
SECONDS_BEHIND = Gauge(
    "evi_processor_seconds_behind",
    "Age of the oldest frame this worker has not processed (0 when caught up)",
    GROUP_LABELS,
)
INPUT_FPS = Gauge(
    "evi_processor_input_fps",
    "Frames per second arriving on this worker's partitions, over the last 10 s",
    GROUP_LABELS,
)
ASSIGNED = Gauge(
    "evi_processor_assigned_partitions", "Frames-topic partitions assigned to this worker",
    GROUP_LABELS,
)
STALLED_SECONDS = Gauge(
    "evi_processor_stalled_seconds",
    "Seconds without commit progress while lag > 0 (liveness fails past stall_timeout_s)",
    GROUP_LABELS,
)


class RateMeter:
    """Events per second over a sliding window, from a monotonic count."""

    def __init__(self, window_s: float = 10.0) -> None:
        self.window_s = window_s
        self._samples: deque[tuple[float, float]] = deque()

    def rate(self, count: float, now: float | None = None) -> float:
        """Record the count now and return the rate over the window (0 until two samples)."""
        t = time.monotonic() if now is None else now
        self._samples.append((t, count))
        while len(self._samples) > 2 and t - self._samples[1][0] >= self.window_s:
            self._samples.popleft()
        t0, c0 = self._samples[0]
        return (count - c0) / (t - t0) if t > t0 else 0.0

    def reset(self) -> None:
        self._samples.clear()
