"""Shared by the fault tests (a broker stopped or killed under a running pipeline): a paced
frame feed that keeps every frame until it is delivered, a results watcher that notes when each
result arrived, and an RSS sampler. Every loop is bounded in time."""

from __future__ import annotations

import contextlib
import functools
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from evi.kafka import partitions_of
from evi.settings import KafkaSettings
from evi.wire import BadResult, FrameMeta, decode_result, frame_headers
from tests.helpers import REPO
from tests.processors.kafka.util import H, W, jpeg

ARTIFACTS = REPO / "test-artifacts"


def rss_mb(pid: int) -> float:
    """VmRSS of a process in MB (psutil is not a dependency)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


class RssSampler(threading.Thread):
    """VmRSS of each pid every `every` s, until stopped (at most `limit_s`)."""

    def __init__(self, pids: Sequence[int], every: float = 0.25, limit_s: float = 300.0) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        self.pids, self.every, self.limit_s = list(pids), every, limit_s
        self.samples: list[tuple[float, int, float]] = []  # (monotonic, pid, MB)
        self.done = threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + self.limit_s
        while not self.done.is_set() and time.monotonic() < deadline:
            for pid in self.pids:
                # a pid that is gone: the test's own liveness checks say so
                with contextlib.suppress(OSError, AssertionError):
                    self.samples.append((time.monotonic(), pid, rss_mb(pid)))
            self.done.wait(self.every)

    def stop(self) -> None:
        self.done.set()
        self.join(5)

    def between(self, t0: float, t1: float, pid: int | None = None) -> list[float]:
        return [mb for t, p, mb in self.samples if t0 <= t <= t1 and pid in (None, p)]


class Feed(threading.Thread):
    """`streams` at `fps` each, stream i on partition i % partitions, seq after seq, until
    stopped. librdkafka keeps what it cannot deliver while a broker is away (up to
    `hold_s`), so every frame handed over is delivered in the end or counted as failed."""

    def __init__(self, kafka: KafkaSettings, topic: str, streams: Sequence[str], fps: float,
                 partitions: int, hold_s: float = 240.0, limit_s: float = 300.0) -> None:
        super().__init__(name="feed", daemon=True)
        self.topic, self.streams, self.fps, self.partitions = topic, list(streams), fps, partitions
        self.limit_s = limit_s
        self.producer = Producer(kafka.client_config() | {
            "message.max.bytes": 10 << 20, "linger.ms": 5, "enable.idempotence": True,
            "acks": "all", "message.timeout.ms": int(hold_s * 1000),
        })  # fmt: skip
        self.handed: list[tuple[str, int]] = []
        self.delivered: list[tuple[str, int]] = []
        self.failed: list[tuple[str, int, str]] = []
        self.done = threading.Event()

    def _report(self, meta: FrameMeta, err: Any, _msg: Any) -> None:  # never raises
        if err is None:
            self.delivered.append((meta.stream, meta.seq))
        else:
            self.failed.append((meta.stream, meta.seq, str(err)))

    def run(self) -> None:
        deadline = time.monotonic() + self.limit_s
        seq = 0
        while not self.done.is_set() and time.monotonic() < deadline:
            t0 = time.monotonic()
            for i, stream in enumerate(self.streams):
                meta = FrameMeta(stream, seq, int(time.time() * 1000), W, H, producer="faults")
                self.producer.produce(self.topic, jpeg(seq % 10), stream.encode(),
                                      partition=i % self.partitions,
                                      headers=list(frame_headers(meta)), timestamp=meta.ts_ms,
                                      on_delivery=functools.partial(self._report, meta))
                self.handed.append((stream, seq))
            self.producer.poll(0)
            seq += 1
            self.done.wait(max(0.0, 1 / self.fps - (time.monotonic() - t0)))

    def finish(self, timeout: float) -> int:
        """Stop feeding and wait for the deliveries; the number still undelivered."""
        self.done.set()
        self.join(5)
        return int(self.producer.flush(timeout))


@dataclass
class Arrival:
    stream: str
    seq: int
    at: float  # monotonic, when the watcher read it
    partition: int
    offset: int


class ResultsWatcher(threading.Thread):
    """Reads the results topic from the start as it grows and notes when each result arrived;
    rides out a broker that goes away (librdkafka reconnects by itself)."""

    def __init__(self, kafka: KafkaSettings, topic: str, limit_s: float = 300.0) -> None:
        super().__init__(name="results-watcher", daemon=True)
        self.limit_s = limit_s
        self.arrivals: list[Arrival] = []
        self.bad = 0
        self.done = threading.Event()
        self.consumer = Consumer(kafka.client_config() | {
            "group.id": f"t-watch-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False,
        })  # fmt: skip
        n = partitions_of(kafka, topic)
        self.consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(n)])

    def run(self) -> None:
        deadline = time.monotonic() + self.limit_s
        try:
            while not self.done.is_set() and time.monotonic() < deadline:
                for m in self.consumer.consume(500, 0.2):
                    if m.error() is not None:
                        continue
                    try:
                        r = decode_result(m.value())
                    except BadResult:
                        self.bad += 1
                        continue
                    self.arrivals.append(Arrival(r.stream, r.seq, time.monotonic(),
                                                 m.partition() or 0, m.offset() or 0))
        finally:
            self.consumer.close()

    def stop(self) -> None:
        self.done.set()
        self.join(10)

    def seen(self) -> set[tuple[str, int]]:
        return {(a.stream, a.seq) for a in list(self.arrivals)}

    def duplicates(self) -> int:
        return sum(n - 1 for n in Counter((a.stream, a.seq) for a in self.arrivals).values())

    def first_after(self, t: float) -> float | None:
        """Seconds from `t` to the first result read after it."""
        later = [a.at for a in list(self.arrivals) if a.at > t]
        return min(later) - t if later else None

    def all_by(self, want: set[tuple[str, int]]) -> float | None:
        """When the last of `want` had arrived (its first copy)."""
        first: dict[tuple[str, int], float] = {}
        for a in self.arrivals:
            first.setdefault((a.stream, a.seq), a.at)
        if not want <= first.keys():
            return None
        return max(first[k] for k in want)


def write_artifact(name: str, doc: dict[str, Any]) -> Path:
    """test-artifacts/<name>: one JSON document of a fault run's numbers."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return path
