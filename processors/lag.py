"""Lag and seconds behind real time, measured by the worker for its own partitions.

Lag per partition is what Kafka's own tools and KEDA's Kafka trigger report: end offset −
committed offset of the group. End offsets come from a ListOffsets request of a small admin client
of our own: the fetcher's cached highwater goes stale while a partition is paused (a full stream
buffer, a stuck agent), and faust's `consumer.highwaters` queues behind the consumer thread's
fetch long-poll (up to 1.5 s). Committed offsets are what this worker committed (faust's monitor)
or, before its first commit, what the group had when the partition was assigned.

Seconds behind is the age of the oldest frame on this worker's partitions that it has not processed
yet: the one number that means the same at 2 streams × 5 fps and 40 streams × 30 fps, which frame
counts do not. The worker knows, per partition, the capture time of the last frame it processed and
when it last had nothing left to process; the next unprocessed frame is younger than both, so the
smaller of the two ages bounds it from above, within one frame interval while behind.
`lag ÷ input rate` was the other candidate: it divides by zero when producers pause, and a burst
skews it for the whole rate window.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec  # type: ignore[attr-defined]
from faust.types import TP

from evi.settings import KafkaSettings
from processors import metrics


class EndOffsets:
    """End offsets of partitions, one batched ListOffsets request per call, off the loop."""

    def __init__(self, kafka: KafkaSettings, timeout_s: float = 5.0) -> None:
        self._kafka = kafka
        self._admin = AdminClient(kafka.client_config())
        self._timeout = timeout_s

    async def __call__(self, tps: Iterable[TP]) -> dict[TP, int]:
        self._admin.poll(0)  # serves its log callbacks: unpolled, they queue while Kafka is away
        tps = list(tps)
        return await asyncio.to_thread(self._ends, tps) if tps else {}

    def _ends(self, tps: list[TP]) -> dict[TP, int]:
        latest = OffsetSpec.latest()  # type: ignore[no-untyped-call]
        asked = {TopicPartition(tp.topic, tp.partition): latest for tp in tps}
        try:
            futures = self._admin.list_offsets(asked, request_timeout=self._timeout)
            return {
                TP(tp.topic, tp.partition): int(f.result(timeout=self._timeout).offset)
                for tp, f in futures.items()
            }
        except (KafkaException, TimeoutError):
            # After a broker restart or a failover the client kept asking the old leader
            # (FENCED_LEADER_EPOCH for 100+ s, or timeouts): the next call gets a fresh one.
            self._admin = AdminClient(self._kafka.client_config())
            raise


@dataclass(slots=True)
class PartitionState:
    assigned_at: float  # wall clock, s
    committed: int | None = None  # next offset to process, as the group has it
    processed_offset: int | None = None  # last offset this worker finished (result or skip)
    processed_ts_ms: int | None = None  # its capture time
    caught_up_at: float | None = None  # wall clock of the last poll with nothing unprocessed
    end: int = 0
    lag: int = 0


@dataclass(frozen=True, slots=True)
class LagSnapshot:
    lag: dict[int, int]
    seconds_behind: float
    input_fps: float
    committed_total: int


class LagTracker:
    def __init__(self, kind: str, frames_topic: str, model: str) -> None:
        self.kind = kind
        self.model = model
        self.topic = frames_topic
        self.parts: dict[int, PartitionState] = {}
        self._input = metrics.RateMeter()
        self._ends_total: int | None = None
        self.snapshot = LagSnapshot({}, 0.0, 0.0, 0)
        # Ages are computed when scraped: end offsets are up to one measurement old (about
        # lag_interval_s + the consumer thread's fetch wait), the clock is not.
        metrics.SECONDS_BEHIND.labels(kind, model).set_function(self.seconds_behind)

    def on_assigned(self, committed: Mapping[TP, int | None]) -> None:
        """After a rebalance: the partitions this worker now has, with the group's commits."""
        now = time.time()
        mine = {tp.partition: off for tp, off in committed.items() if tp.topic == self.topic}
        for p in list(self.parts):
            if p not in mine:
                del self.parts[p]
                metrics.LAG.remove(self.kind, self.model, str(p))
        for p, off in mine.items():
            state = self.parts.setdefault(p, PartitionState(assigned_at=now))
            if off is not None and off >= 0 and (state.committed or -1) < off:
                state.committed = off
        self._input.reset()
        self._ends_total = None
        metrics.ASSIGNED.labels(self.kind, self.model).set(len(self.parts))

    def processed(self, partition: int, offset: int, ts_ms: int) -> None:
        """The handler finished this frame (result produced, skipped or dead-lettered)."""
        state = self.parts.get(partition)
        if state is not None and (state.processed_offset or -1) < offset:
            state.processed_offset = offset
            state.processed_ts_ms = ts_ms

    def update(
        self, ends: Mapping[TP, int], committed: Mapping[Any, int], now: float | None = None
    ) -> LagSnapshot:
        """One measurement: `ends` from ListOffsets, `committed` = this worker's commits."""
        now = time.time() if now is None else now
        lag_by_part: dict[int, int] = {}
        for tp, end in ends.items():
            state = self.parts.get(tp.partition)
            if tp.topic != self.topic or state is None:
                continue
            mine = committed.get(tp)
            if mine is not None and (state.committed is None or mine > state.committed):
                state.committed = mine
            state.end = end
            # No commit yet: every frame counts, as KEDA's trigger does with offsetResetPolicy
            # earliest (Kafka's own tool prints '-').
            state.lag = max(0, end - state.committed) if state.committed else end
            lag_by_part[tp.partition] = state.lag
            metrics.LAG.labels(self.kind, self.model, str(tp.partition)).set(state.lag)
        ends_total = sum(s.end for s in self.parts.values())
        fps = self._input.rate(ends_total, time.monotonic()) if self._ends_total is not None else 0
        self._ends_total = ends_total
        committed_total = sum(s.committed or 0 for s in self.parts.values())
        behind = self.seconds_behind(now)
        self.snapshot = LagSnapshot(lag_by_part, behind, max(0.0, fps), committed_total)
        metrics.WORKER_LAG.labels(self.kind, self.model).set(sum(lag_by_part.values()))
        metrics.INPUT_FPS.labels(self.kind, self.model).set(round(self.snapshot.input_fps, 2))
        return self.snapshot

    def seconds_behind(self, now: float | None = None) -> float:
        now = time.time() if now is None else now
        return round(max((self._behind(s, now) for s in self.parts.values()), default=0.0), 3)

    @staticmethod
    def _behind(state: PartitionState, now: float) -> float:
        done = state.processed_offset + 1 if state.processed_offset is not None else None
        start = max(done or 0, state.committed or 0)
        if start >= state.end:
            state.caught_up_at = now
            return 0.0
        ages = [now - state.assigned_at]  # nothing processed yet: at least this long
        if state.processed_ts_ms is not None:
            ages = [now - state.processed_ts_ms / 1000]
        if state.caught_up_at is not None:
            ages.append(now - state.caught_up_at)
        return max(0.0, min(ages))
