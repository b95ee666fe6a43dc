"""Rolling per-stream numbers the REST API reports: input/output FPS, latency percentiles, drops.

Sequence numbers restart at 0 with each producer run and results are at-least-once, so a number
that goes backwards is a new run when its capture time is newer, and a duplicate otherwise.
"""

from __future__ import annotations

import math
import time
from collections import deque
from typing import Any

from evi.wire import FrameMeta, Result

WINDOW_S = 10.0


def rate(times: deque[float], now: float) -> float:
    """Events per second over the last WINDOW_S seconds (monotonic timestamps)."""
    while times and times[0] < now - WINDOW_S:
        times.popleft()
    if len(times) < 2:
        return 0.0
    span = max(now - times[0], 1e-3)
    return round(len(times) / span, 2)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..1)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    i = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
    return round(ordered[i], 2)


def _now_ms() -> int:
    return int(time.time() * 1000)


class ModelStats:
    """Results of one model on one stream."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.times: deque[float] = deque(maxlen=10_000)
        self.latency_ms: deque[float] = deque(maxlen=1000)
        self.last_seq = -1
        self.last_ts = 0
        self.total = 0
        self.skipped = 0
        self.duplicates = 0

    def accept(self, r: Result) -> bool:
        """Count a result; False for a duplicate (at-least-once replay) that must not be shown."""
        if self.last_seq >= 0 and r.seq <= self.last_seq and r.ts_ms <= self.last_ts:
            self.duplicates += 1
            return False
        if self.last_seq >= 0 and r.seq > self.last_seq + 1:
            self.skipped += r.seq - self.last_seq - 1
        self.last_seq, self.last_ts = r.seq, r.ts_ms
        self.total += 1
        self.times.append(time.monotonic())
        self.latency_ms.append(max(0.0, _now_ms() - r.ts_ms))
        return True


class StreamStats:
    def __init__(self) -> None:
        self.frames_topic: str | None = None  # frames are counted on the first topic seen
        self.frames_in: deque[float] = deque(maxlen=10_000)
        self.latency_ms: deque[float] = deque(maxlen=1000)
        self.infer_ms: deque[float] = deque(maxlen=1000)
        self.models: dict[str, ModelStats] = {}
        self.last_frame_seq = -1
        self.last_frame_ts = 0
        self.frames_total = 0
        self.frames_missing = 0
        self.results_total = 0
        self.last_seq = -1
        self.last_seen_ms = 0
        self.last_result_mono = 0.0

    def on_frame(self, topic: str, meta: FrameMeta) -> bool:
        """Count a frame copy; True when it is new (a stream's frames go to one topic per kind,
        and only the copies on its first topic are counted)."""
        if self.frames_topic is None:
            self.frames_topic = topic
        if topic != self.frames_topic:
            return False
        last, last_ts = self.last_frame_seq, self.last_frame_ts
        if last >= 0 and meta.seq <= last and meta.ts_ms <= last_ts:
            return False  # a replayed copy
        if last >= 0 and meta.seq > last + 1:
            self.frames_missing += meta.seq - last - 1
        self.last_frame_seq, self.last_frame_ts = meta.seq, meta.ts_ms
        self.frames_in.append(time.monotonic())
        self.frames_total += 1
        self.last_seen_ms = _now_ms()
        return True

    def on_result(self, r: Result) -> bool:
        """Count a result; False when it is a duplicate of one already shown."""
        m = self.models.get(r.model)
        if m is None:
            m = self.models[r.model] = ModelStats(r.kind)
        if not m.accept(r):
            return False
        self.latency_ms.append(m.latency_ms[-1])
        self.infer_ms.append(r.infer_ms)
        self.results_total += 1
        self.last_seq = r.seq
        self.last_seen_ms = _now_ms()
        self.last_result_mono = time.monotonic()
        return True

    def snapshot(self, client_drops: int = 0) -> dict[str, Any]:
        now = time.monotonic()
        lat = list(self.latency_ms)
        models: list[dict[str, Any]] = []
        for name in sorted(self.models):
            m = self.models[name]
            models.append({
                "model": name,
                "kind": m.kind,
                "results_seen": m.total,
                "fps_out": rate(m.times, now),
                "last_seq": m.last_seq,
                "latency_p50_ms": percentile(list(m.latency_ms), 0.5),
                "skipped": m.skipped,
                "duplicates": m.duplicates,
            })
        return {
            "fps_in": rate(self.frames_in, now),
            "fps_out": round(sum(m["fps_out"] for m in models), 2),
            "latency_p50_ms": percentile(lat, 0.5),
            "latency_p95_ms": percentile(lat, 0.95),
            "latency_p99_ms": percentile(lat, 0.99),
            "infer_p50_ms": percentile(list(self.infer_ms), 0.5),
            "frames_seen": self.frames_total,
            "results_seen": self.results_total,
            "last_seq": self.last_seq,
            "last_seen_ms": self.last_seen_ms,
            "drops": {
                "frames": self.frames_missing,
                "results": sum(m.skipped for m in self.models.values()),
                "clients": client_drops,
                "duplicates": sum(m.duplicates for m in self.models.values()),
            },
            "models": models,
        }
