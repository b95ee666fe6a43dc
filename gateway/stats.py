"""Rolling per-stream numbers the REST API reports: input/output FPS and latency percentiles."""

from __future__ import annotations

import time
from collections import deque

from evi.wire import Result

WINDOW_S = 10.0


def _rate(times: deque[float], now: float) -> float:
    while times and times[0] < now - WINDOW_S:
        times.popleft()
    if len(times) < 2:
        return 0.0
    span = max(now - times[0], 1e-3)
    return round(len(times) / span, 2)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    i = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return round(ordered[i], 2)


class StreamStats:
    def __init__(self) -> None:
        self.frames_in: deque[float] = deque(maxlen=10_000)
        self.results_out: deque[float] = deque(maxlen=10_000)
        self.latency_ms: deque[float] = deque(maxlen=1000)
        self.infer_ms: deque[float] = deque(maxlen=1000)
        self.last_frame_ms = 0
        self.last_result_ms = 0
        self.last_seq = -1
        self.frames_total = 0
        self.results_total = 0

    def on_frame(self, ts_ms: int) -> None:
        self.frames_in.append(time.monotonic())
        self.last_frame_ms = ts_ms
        self.frames_total += 1

    def on_result(self, r: Result) -> None:
        self.results_out.append(time.monotonic())
        self.latency_ms.append(max(0.0, time.time() * 1000 - r.ts_ms))
        self.infer_ms.append(r.infer_ms)
        self.last_result_ms = r.processed_ms
        self.last_seq = r.seq
        self.results_total += 1

    def snapshot(self) -> dict[str, float | int]:
        now = time.monotonic()
        lat = list(self.latency_ms)
        return {
            "fps_in": _rate(self.frames_in, now),
            "fps_out": _rate(self.results_out, now),
            "latency_p50_ms": percentile(lat, 0.5),
            "latency_p95_ms": percentile(lat, 0.95),
            "latency_p99_ms": percentile(lat, 0.99),
            "infer_p50_ms": percentile(list(self.infer_ms), 0.5),
            "frames_seen": self.frames_total,
            "results_seen": self.results_total,
            "last_seq": self.last_seq,
        }
