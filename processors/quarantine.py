"""Quarantine for what Python cannot catch: a frame that kills its worker (an abort or a
segfault in a codec or the model, or a hang past the frame budget) must not crash-loop a kind.

Before a batch's frames run, the worker writes, for each frames partition in the batch, the
range of offsets it has running to `evi.inflight.<group>` (the same partition number; compacted,
acks=all), and waits for the write. The topic is in Kafka, so it survives a pod that moves to
another node. When a partition is assigned, its new owner reads the partition's last in-flight
record and the group's committed offset:
- a range below the commit finished (a clean stop, a rebalance, a kill after the commit);
- a range at or above it was running when its worker died. Its frames are run again one at a
  time, each alone in the worker (nothing else in flight), each recorded as `alone`;
- a frame recorded `alone` that is still uncommitted killed a worker running only it. After
  `quarantine_deaths` such deaths it is not run again: it goes to the dead-letter topic with
  reason `quarantined`, and the partition moves on.
So a poison frame costs at most 1 + `quarantine_deaths` worker deaths (default 2), whatever the
batch size, and an innocent kill (SIGKILL, OOM of something else) costs one slower replay of the
frames that were in flight. Exactly what the Kafka Streams deserialization handler does for
exceptions, extended to deaths.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.cimpl import NewPartitions
from faust.types import TP

from evi.kafka import admin, ensure_topics, partitions_of, watermarks
from evi.settings import KafkaSettings
from evi.topics import Topics
from evi.wire import BadResult, InFlight, decode_inflight, encode_inflight
from processors import metrics
from processors.sink import Sink

log = logging.getLogger("evi.processor")

READ_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class Suspect:
    """Frames of one partition that were running when a worker died."""

    first: int
    last: int
    alone_deaths: int  # deaths with the frame `first` (== `last`) running alone; 0 for a range


@dataclass(frozen=True, slots=True)
class Verdict:
    quarantine: bool
    deaths: int  # deaths so far with the frame running alone (its in-flight record says so)


def suspect_of(record: InFlight | None, committed: int | None, quarantine_deaths: int
               ) -> tuple[Suspect | None, bool]:  # fmt: skip
    """What an in-flight record left by a partition's last owner means for its next owner:
    (frames to run alone, or None; whether the record's single frame is to be quarantined)."""
    if record is None or not record.running or (committed is not None and record.last < committed):
        return None, False  # nothing was running uncommitted
    first = record.first if committed is None else max(record.first, committed)
    if record.alone:
        deaths = record.deaths + 1
        return Suspect(first, record.last, deaths), deaths >= quarantine_deaths
    return Suspect(first, record.last, 0), False


class Flight:
    """The in-flight records of one worker, and the verdicts on frames its predecessors left."""

    def __init__(self, kafka: KafkaSettings, topics: Topics, group: str, frames_topic: str,
                 quarantine_deaths: int, max_bytes: int, outage_s: float) -> None:  # fmt: skip
        self.kafka = kafka
        self.topics = topics
        self.group = group
        self.topic = topics.inflight(group)
        self.frames_topic = frames_topic
        self.quarantine_deaths = quarantine_deaths
        self.worker = f"{socket.gethostname()}-{os.getpid()}"
        # its own: results linger, this waits; as patient with a broker that is away
        self._sink = Sink(kafka, max_bytes, linger_ms=0, outage_s=outage_s)
        self._running: dict[int, dict[int, int]] = {}  # partition -> offset -> batches holding it
        self._suspects: dict[int, Suspect] = {}
        self._quarantine: dict[int, int] = {}  # partition -> offset to dead-letter, not run
        self._loading: asyncio.Task[None] | None = None
        self.quarantined = metrics.QUARANTINED

    # --- at assignment -------------------------------------------------------------------------
    def on_assigned(self, committed: Mapping[TP, int | None]) -> None:
        """Read what the partitions' last owners had in flight; batches wait until it is read."""
        mine = {tp.partition: off for tp, off in committed.items() if tp.topic == self.frames_topic}
        self._loading = asyncio.ensure_future(self._load(mine))

    async def _load(self, committed: dict[int, int | None]) -> None:
        try:
            records = await asyncio.to_thread(self._read, sorted(committed))
        except (KafkaException, TimeoutError, KeyError) as e:
            # Not about a frame: the broker is away. Frames run normally; a poison frame among
            # them costs another death, and the next owner reads the records again.
            log.warning("cannot read in-flight records of %s: %s", self.topic, e)
            return
        for p, off in committed.items():
            suspect, quarantine = suspect_of(records.get(p), off, self.quarantine_deaths)
            self._suspects.pop(p, None)
            self._quarantine.pop(p, None)
            if suspect is None:
                continue
            if quarantine:
                self._quarantine[p] = suspect.first
            else:
                self._suspects[p] = suspect
            log.warning("%s[%d]: a worker died with offsets %d..%d in flight%s", self.frames_topic,
                        p, suspect.first, suspect.last,
                        "; quarantining the frame it was running alone" if quarantine
                        else f"; running them one at a time (deaths alone: "
                             f"{suspect.alone_deaths})")  # fmt: skip

    def _read(self, partitions: list[int]) -> dict[int, InFlight]:
        """Each partition's last in-flight record (creating the topic, or its partitions)."""
        n = max(partitions_of(self.kafka, self.frames_topic), max(partitions, default=0) + 1)
        ensure_topics(self.kafka, [self.topics.inflight_spec(self.group, n)])
        have = partitions_of(self.kafka, self.topic)
        if have < n:
            futs = admin(self.kafka).create_partitions([NewPartitions(self.topic, n)])
            for fut in futs.values():
                fut.result(READ_TIMEOUT_S)
        c = Consumer(self.kafka.client_config() | {
            "group.id": f"{self.group}-inflight-reader", "enable.auto.commit": False,
        })  # fmt: skip
        try:
            marks = watermarks(c, self.topic, partitions, READ_TIMEOUT_S)
            want = {p: high - 1 for p, (low, high) in marks.items() if high > low}
            if not want:
                return {}
            c.assign([TopicPartition(self.topic, p, off) for p, off in want.items()])
            out: dict[int, InFlight | None] = {}
            deadline = time.monotonic() + READ_TIMEOUT_S
            while len(out) < len(want) and time.monotonic() < deadline:
                m = c.poll(0.5)
                if m is None or m.error() is not None:
                    continue
                p = m.partition() or 0
                if m.offset() != want.get(p):
                    continue
                try:
                    out[p] = decode_inflight(m.value())
                except BadResult as e:  # not ours to trust: as if nothing was in flight
                    out[p] = None
                    metrics.BAD_INFLIGHT.inc()
                    log.warning("%s[%d]@%d: bad in-flight record ignored: %s", self.topic, p,
                                m.offset(), e)  # fmt: skip
            if len(out) < len(want):
                raise TimeoutError(f"in-flight records of {self.topic} not read in time")
            return {part: r for part, r in out.items() if r is not None}
        finally:
            c.close()

    async def ready(self) -> None:
        if self._loading is not None and not self._loading.done():
            await self._loading

    # --- per batch -----------------------------------------------------------------------------
    @property
    def suspicious(self) -> bool:
        """Whether any frame is left to run alone or quarantine (almost never: the hot path asks
        this once per batch instead of a verdict per frame)."""
        return bool(self._suspects or self._quarantine)

    def verdict(self, partition: int, offset: int) -> Verdict | None:
        """None for a frame that runs normally; else whether to quarantine it or run it alone."""
        if self._quarantine.get(partition) == offset:
            return Verdict(True, 0)
        s = self._suspects.get(partition)
        if s is None or not s.first <= offset <= s.last:
            return None
        return Verdict(False, s.alone_deaths if offset == s.first else 0)

    def settled(self, partition: int, offset: int) -> None:
        """A suspect or quarantined frame has its result or dead letter: suspicion ends at the
        range's last frame."""
        s = self._suspects.get(partition)
        if s is not None and offset >= s.last:
            del self._suspects[partition]
        if self._quarantine.get(partition) == offset:
            del self._quarantine[partition]

    async def mark(self, frames: Iterable[tuple[int, int]], alone_deaths: int | None = None
                   ) -> None:  # fmt: skip
        """Record (partition, offset) frames as running, and wait until Kafka has the record.
        `alone_deaths` is given for one frame run alone."""
        touched: set[int] = set()
        for p, off in frames:
            held = self._running.setdefault(p, {})
            held[off] = held.get(off, 0) + 1
            touched.add(p)
        now = int(time.time() * 1000)
        futs: list[Any] = []
        for p in sorted(touched):
            held = self._running[p]
            rec = InFlight(min(held), max(held), alone_deaths is not None, alone_deaths or 0,
                           self.worker, now)  # fmt: skip
            futs.append(await self._sink.send(self.topic, str(p).encode(),
                                              encode_inflight(rec), partition=p))  # fmt: skip
        for fut in futs:
            await fut  # a write that fails is not about a frame: the caller's error is fatal

    async def finished_alone(self, partition: int, offset: int) -> None:
        """A frame run alone finished (result or dead letter): say so before the next one runs,
        or a death while a frame of another partition runs alone would be blamed on it too."""
        self.done([(partition, offset)])
        rec = InFlight(offset, offset, True, 0, self.worker, int(time.time() * 1000), False)
        await (await self._sink.send(self.topic, str(partition).encode(), encode_inflight(rec),
                                     partition=partition))  # fmt: skip

    def done(self, frames: Iterable[tuple[int, int]]) -> None:
        """Frames that finished running (with a result, a dead letter or cancelled)."""
        for p, off in frames:
            held = self._running.get(p)
            if held is None or off not in held:
                continue
            held[off] -= 1
            if held[off] <= 0:
                del held[off]
            if not held:
                del self._running[p]

    def close(self) -> None:
        self._sink.close(5.0)
