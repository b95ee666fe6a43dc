"""drop-stale, fair across streams: which frames of a micro-batch to infer and which to skip.

A frame is stale when its capture time is more than `max_age_ms` before now. Fresh frames are
always kept (and serve their stream). Stale frames are what a worker behind real time must skip to
catch up, but skipping all of them would starve exactly the streams that are behind (a busy
partition carries several streams). So, per stream without a fresh frame in the batch, its newest
stale frame is kept when the stream got no stale frame kept within the last `keep_ms` of its own
capture time; every other stale frame is dropped. While behind, each stream still gets about one
result per `keep_ms`, and the backlog drains at up to `batch frames ÷ streams` times the inference
rate.

Plain code, no Kafka: `processors.handler` calls `plan` once per batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Candidate:
    stream: str
    ts_ms: int  # capture time


@dataclass(slots=True)
class StalePolicy:
    max_age_ms: int
    keep_ms: int
    # Capture time of the last stale frame kept, per stream (bounded: one int per live stream).
    last_kept: dict[str, int] = field(default_factory=dict)

    def plan(self, frames: Sequence[Candidate], now_ms: int) -> list[bool]:
        """For each frame of the batch, in order: True = infer it, False = drop it as stale."""
        keep = [now_ms - f.ts_ms <= self.max_age_ms for f in frames]
        served = {f.stream for f, k in zip(frames, keep, strict=True) if k}
        newest_stale: dict[str, int] = {}  # stream → index of its newest stale frame
        for i, f in enumerate(frames):
            if not keep[i] and f.stream not in served:
                j = newest_stale.get(f.stream)
                if j is None or f.ts_ms >= frames[j].ts_ms:
                    newest_stale[f.stream] = i
        for stream, i in newest_stale.items():
            ts = frames[i].ts_ms
            last = self.last_kept.get(stream)
            if last is None or ts - last >= self.keep_ms or ts < last:  # ts < last: clock reset
                keep[i] = True
                self.last_kept[stream] = ts
        if len(self.last_kept) > 4096:  # streams come and go; forget the oldest half
            for s, _ in sorted(self.last_kept.items(), key=lambda kv: kv[1])[:2048]:
                del self.last_kept[s]
        return keep
