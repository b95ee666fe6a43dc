"""Rolling per-stream numbers the REST API reports: input/output FPS, latency percentiles, drops.

Duplicates are recognised by identity, not by order: a window remembers the (seq, ts_ms) of the
last N results of a stream and model, and only a record already in it is a replay. A high-water
mark (`seq <= last and ts <= last_ts`) would take a producer restart, a clock jump or one forged
seq as the new mark and drop every later genuine result; a window cannot be poisoned that way.
"""

from __future__ import annotations

import math
import time
from collections import deque

from evi.wire import FrameMeta, Result
from gateway.schemas import Drops, ModelView, StreamStatsView

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


class LostRanges:
    """The last 64 runs of frame seqs a stream never delivered (lost before any processor), so
    a gap in a model's results can tell the frames it skipped from the frames nobody had."""

    __slots__ = ("_runs",)

    def __init__(self) -> None:
        self._runs: deque[tuple[int, int]] = deque(maxlen=64)  # (first, last) seq, inclusive

    def add(self, first: int, last: int) -> None:
        self._runs.append((first, last))

    def within(self, first: int, last: int) -> int:
        """How many seqs of first..last are in a lost run."""
        return sum(max(0, min(last, b) - max(first, a) + 1) for a, b in self._runs)


class GapRate:
    """Sequence numbers skipped a second over the last WINDOW_S (bounded: the last 256 gaps,
    ~20 kB per stream and model; more than 25 gaps a second is counted low, still above 0)."""

    __slots__ = ("_gaps",)

    def __init__(self) -> None:
        self._gaps: deque[tuple[float, int]] = deque(maxlen=256)  # (when, how many skipped)

    def add(self, now: float, n: int) -> None:
        if n:
            self._gaps.append((now, n))

    def per_s(self, now: float) -> float:
        while self._gaps and self._gaps[0][0] < now - WINDOW_S:
            self._gaps.popleft()
        return sum(n for _, n in self._gaps) / WINDOW_S


class SeenWindow:
    """The last `size` (seq, ts_ms) pairs seen, and where the sequence is (for gap counting)."""

    __slots__ = ("_keys", "_order", "last_seq", "last_ts", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self._keys: set[int] = set()
        self._order: deque[int] = deque()
        self.last_seq = -1
        self.last_ts = 0

    def __len__(self) -> int:
        return len(self._order)

    def add(self, seq: int, ts_ms: int) -> int | None:
        """None for a pair already seen (a replay); else the sequence numbers skipped before it.

        A seq further than `size` from the last one is a new run or a forged number: it moves
        the position without counting a gap, so one wild seq costs at most one bad count."""
        key = (ts_ms << 53) | seq  # exact: seq < 2**53 (evi.wire.MAX_SEQ)
        if key in self._keys:
            return None
        if len(self._order) >= self.size:
            self._keys.discard(self._order.popleft())
        self._order.append(key)
        self._keys.add(key)
        last, gap = self.last_seq, 0
        if last < 0 or abs(seq - last) > self.size:
            pass  # a first, a new run far away, or a forged seq: nothing to compare with
        elif seq > last:
            gap = seq - last - 1
        elif ts_ms <= self.last_ts:
            return 0  # a late copy of an older seq: the position stays
        self.last_seq, self.last_ts = seq, ts_ms  # (seq <= last with a newer ts: a restart)
        return gap


class ModelStats:
    """Results of one model on one stream."""

    def __init__(self, kind: str, window: int) -> None:
        self.kind = kind
        self.times: deque[float] = deque(maxlen=10_000)
        self.latency_ms: deque[float] = deque(maxlen=1000)
        self.seen = SeenWindow(window)
        self.total = 0
        self.skipped = 0
        self.skips = GapRate()
        self.duplicates = 0

    def accept(self, r: Result, lost: LostRanges | None = None) -> bool:
        """Count a result; False for a duplicate (at-least-once replay) that must not be shown.
        A gap before it counts as skipped by the model except the frames never delivered."""
        gap = self.seen.add(r.seq, r.ts_ms)
        if gap is None:
            self.duplicates += 1
            return False
        now = time.monotonic()
        self.skipped += gap
        if gap:
            self.skips.add(now, gap - (lost.within(r.seq - gap, r.seq - 1) if lost else 0))
        self.total += 1
        self.times.append(now)
        self.latency_ms.append(max(0.0, _now_ms() - r.ts_ms))
        return True

    def view(self, name: str, now: float) -> ModelView:
        """`skipped_per_s`: frames a second over the last WINDOW_S the stream delivered and this
        model did not answer, which is what drop-stale does while behind (docs/gateway.md,
        "Pictures")."""
        skipping = self.skips.per_s(now)
        return ModelView(
            model=name, kind=self.kind, results_seen=self.total, fps_out=rate(self.times, now),
            last_seq=self.seen.last_seq, latency_p50_ms=percentile(list(self.latency_ms), 0.5),
            skipped=self.skipped, skipped_per_s=round(skipping, 2), duplicates=self.duplicates,
        )


class StreamStats:
    def __init__(self, window: int = 2048, max_models: int = 16) -> None:
        self.window = window
        self.max_models = max_models
        self.frames_topic: str | None = None  # frames are counted on the first topic seen
        self.frames_in: deque[float] = deque(maxlen=10_000)
        self.latency_ms: deque[float] = deque(maxlen=1000)
        self.infer_ms: deque[float] = deque(maxlen=1000)
        self.models: dict[str, ModelStats] = {}
        self.frames_seen = SeenWindow(window)
        self.frames_total = 0
        self.frames_missing = 0
        self.lost = LostRanges()
        self.results_total = 0
        self.last_seq = -1
        self.last_seen_ms = 0
        self.last_result_mono = 0.0
        self.client_drops = 0  # messages of this stream slow websocket clients lost

    def on_frame(self, topic: str, meta: FrameMeta) -> bool:
        """Count a frame copy; True when it is new (a stream's frames go to one topic per kind,
        and only the copies on its first topic are counted)."""
        if self.frames_topic is None:
            self.frames_topic = topic
        if topic != self.frames_topic:
            return False
        gap = self.frames_seen.add(meta.seq, meta.ts_ms)
        if gap is None:
            return False  # a replayed copy
        self.frames_missing += gap
        if gap:
            self.lost.add(meta.seq - gap, meta.seq - 1)
        self.frames_in.append(time.monotonic())
        self.frames_total += 1
        self.last_seen_ms = _now_ms()
        return True

    def model(self, r: Result) -> ModelStats | None:
        """The model's numbers; None past `max_models` distinct models on this stream."""
        m = self.models.get(r.model)
        if m is None and len(self.models) < self.max_models:
            m = self.models[r.model] = ModelStats(r.kind, self.window)
        return m

    def on_result(self, m: ModelStats, r: Result) -> bool:
        """Count a result; False when it is a duplicate of one already shown."""
        if not m.accept(r, self.lost):
            return False
        self.latency_ms.append(m.latency_ms[-1])
        self.infer_ms.append(r.infer_ms)
        self.results_total += 1
        self.last_seq = r.seq
        self.last_seen_ms = _now_ms()
        self.last_result_mono = time.monotonic()
        return True

    def kinds(self) -> list[str]:
        return sorted({m.kind for m in self.models.values()})

    def snapshot(self) -> StreamStatsView:
        now = time.monotonic()
        lat = list(self.latency_ms)
        models = [self.models[name].view(name, now) for name in sorted(self.models)]
        return StreamStatsView(
            fps_in=rate(self.frames_in, now),
            fps_out=round(sum(m.fps_out for m in models), 2),
            latency_p50_ms=percentile(lat, 0.5),
            latency_p95_ms=percentile(lat, 0.95),
            latency_p99_ms=percentile(lat, 0.99),
            infer_p50_ms=percentile(list(self.infer_ms), 0.5),
            frames_seen=self.frames_total,
            results_seen=self.results_total,
            last_seq=self.last_seq,
            last_seen_ms=self.last_seen_ms,
            drops=Drops(
                frames=self.frames_missing,
                results=sum(m.skipped for m in models),
                clients=self.client_drops,
                duplicates=sum(m.duplicates for m in models),
            ),
            models=models,
        )
