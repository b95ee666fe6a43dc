"""Frames to Kafka without ever blocking capture or growing memory.

Each stream has a small bounded queue in front of librdkafka; when it is full the OLDEST
pending frame is dropped (counted as `queue_full`). One sender thread moves frames from the
queues into librdkafka while the bytes handed over and not yet acknowledged stay under
`max_inflight_bytes`; one poll thread serves delivery callbacks. A frame with several kinds is
one queue entry and one record per kind topic (same JPEG bytes, same headers).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from evi.settings import KafkaSettings
from producers import metrics as m
from producers.burst import BurstLog
from producers.metrics import ProducerMetrics
from producers.settings import PublisherSettings

log = logging.getLogger("evi.producer.publisher")

RECORD_OVERHEAD = 512  # key, headers and record framing, generously
_PURGED = {KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT}


@dataclass(slots=True)
class Pending:
    """One encoded frame waiting to be handed to librdkafka."""

    stream: str
    seq: int
    value: bytes
    headers: list[tuple[str, bytes]]
    targets: tuple[tuple[str, str], ...]  # (kind, topic)
    t_capture: float  # time.monotonic() at capture

    @property
    def cost(self) -> int:
        return len(self.value) * len(self.targets)


@dataclass
class StreamStats:
    frames: int = 0  # submitted
    records: int = 0  # submitted x kinds
    acked: int = 0  # records the broker acknowledged
    dropped: Counter[str] = field(default_factory=Counter)  # frames, by reason

    @property
    def complete(self) -> bool:
        return self.acked == self.records and not self.dropped


def producer_config(
    kafka: KafkaSettings, s: PublisherSettings, max_message_bytes: int, client_id: str
) -> dict[str, Any]:
    """librdkafka settings for 30-200 KB frames: acks=all, idempotent, uncompressed JPEG."""
    return kafka.client_config() | {
        "client.id": client_id,
        "acks": "all",
        "enable.idempotence": True,
        "max.in.flight.requests.per.connection": 5,
        "compression.type": "none",  # JPEG does not compress
        "linger.ms": s.linger_ms,
        "batch.size": min(s.batch_size, max_message_bytes),
        "message.max.bytes": max_message_bytes,
        "queue.buffering.max.kbytes": 2 * s.max_inflight_bytes // 1024 + 1024,
        "queue.buffering.max.messages": 100_000,
        "message.timeout.ms": s.message_timeout_ms,
        "partitioner": "murmur2_random",  # same partition for a key as the Java client
        "reconnect.backoff.ms": 100,
        "reconnect.backoff.max.ms": 2000,  # find a returning broker within ~2 s
    }


class Publisher:
    def __init__(
        self,
        config: dict[str, Any],
        settings: PublisherSettings,
        max_message_bytes: int,
        metrics: ProducerMetrics,
        producer_factory: Callable[[dict[str, Any]], Any] = Producer,
    ) -> None:
        self.settings = settings
        self.max_message_bytes = max_message_bytes
        self.metrics = metrics
        self._producer = producer_factory(config)
        self._cond = threading.Condition()
        self._queues: dict[str, deque[Pending]] = {}
        self._stats: dict[str, StreamStats] = {}
        self._order: deque[str] = deque()
        self._inflight = 0
        self.max_inflight_seen = 0
        self._closing = False
        self._stop_poll = threading.Event()
        self._burst = BurstLog(log)
        self._metric_children: dict[tuple[str, str], tuple[Any, Any]] = {}
        self._sender = threading.Thread(target=self._send_loop, name="evi-sender", daemon=True)
        self._poller = threading.Thread(target=self._poll_loop, name="evi-poller", daemon=True)

    def start(self) -> None:
        self._sender.start()
        self._poller.start()

    def add_stream(self, stream: str) -> None:
        with self._cond:
            self._queues.setdefault(stream, deque())
            self._stats.setdefault(stream, StreamStats())
            if stream not in self._order:
                self._order.append(stream)

    def stats(self, stream: str) -> StreamStats:
        with self._cond:
            s = self._stats[stream]
            return StreamStats(s.frames, s.records, s.acked, Counter(s.dropped))

    def queued(self, stream: str) -> int:
        with self._cond:
            return len(self._queues[stream])

    @property
    def inflight_bytes(self) -> int:
        return self._inflight

    def _drop(self, stream: str, reason: str, n: int = 1) -> None:
        """Count a dropped frame; caller holds the lock."""
        self._stats[stream].dropped[reason] += n
        self.metrics.dropped.labels(stream, reason).inc(n)

    def submit(self, item: Pending, wait: bool = False) -> bool:
        """Queue a frame. When the stream's queue is full, drop its oldest pending frame; with
        `wait` (recorded sources read as fast as possible) first wait for room, at most about
        one message timeout. False if the frame was refused (too large or closing)."""
        size = len(item.value) + RECORD_OVERHEAD
        with self._cond:
            st = self._stats[item.stream]
            st.frames += 1
            st.records += len(item.targets)
            q = self._queues[item.stream]
            if wait:
                waits = int(self.settings.message_timeout_ms / 50) + 20
                for _ in range(waits):
                    if len(q) < self.settings.queue_frames or self._closing:
                        break
                    self._cond.wait(0.05)
            if size > self.max_message_bytes:
                self._drop(item.stream, m.TOO_LARGE)
                too_large = True
            elif self._closing:
                self._drop(item.stream, m.SHUTDOWN)
                return False
            else:
                too_large = False
                if len(q) >= self.settings.queue_frames:
                    q.popleft()
                    self._drop(item.stream, m.QUEUE_FULL)
                q.append(item)
                self._cond.notify_all()
        if too_large:
            self._burst.problem(
                f"too-large:{item.stream}",
                f"stream={item.stream} seq={item.seq} frame is {len(item.value)} bytes, over the "
                f"topic limit {self.max_message_bytes}: lower --quality or --width/--height",
            )
            return False
        return True

    def _next(self) -> Pending | None:
        """Round-robin over streams: the oldest frame that fits the in-flight cap; holds lock."""
        for _ in range(len(self._order)):
            stream = self._order[0]
            self._order.rotate(-1)
            q = self._queues[stream]
            if q and (self._inflight == 0 or self._inflight + q[0].cost
                      <= self.settings.max_inflight_bytes):
                item = q.popleft()
                self._cond.notify_all()  # a submit may wait for room
                self._inflight += item.cost
                self.max_inflight_seen = max(self.max_inflight_seen, self._inflight)
                return item
        return None

    def _send_loop(self) -> None:
        while True:
            with self._cond:
                item = self._next()
                while item is None:
                    if self._closing and not any(self._queues.values()):
                        return
                    self._cond.wait(0.05)
                    if self._closing and self._stop_poll.is_set():
                        return
                    item = self._next()
            self.metrics.inflight_bytes.set(self._inflight)
            for kind, topic in item.targets:
                self._produce(item, kind, topic)

    def _produce(self, item: Pending, kind: str, topic: str) -> None:
        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            self._delivered(item, kind, err)

        for _ in range(1000):  # librdkafka's own queue full: bounded retry while it drains
            try:
                self._producer.produce(
                    topic, item.value, item.stream.encode(), headers=item.headers,
                    on_delivery=on_delivery,
                )
                return
            except BufferError:
                time.sleep(0.005)
        self._delivered(item, kind, KafkaError(KafkaError._QUEUE_FULL))

    def _delivered(self, item: Pending, kind: str, err: KafkaError | None) -> None:
        with self._cond:
            self._inflight -= len(item.value)
            st = self._stats[item.stream]
            if err is None:
                st.acked += 1
            else:
                self._drop(item.stream, m.SHUTDOWN if err.code() in _PURGED else m.DELIVERY)
            self._cond.notify()
        if err is None:
            produced, nbytes = self._children(item.stream, kind)
            produced.inc()
            nbytes.inc(len(item.value))
            self.metrics.delivery_seconds.observe(time.monotonic() - item.t_capture)
            if self._burst.pending(f"delivery:{item.stream}"):
                self._burst.resolved(f"delivery:{item.stream}", f"stream={item.stream} delivering")
        elif err.code() not in _PURGED:
            self.metrics.delivery_errors.labels(item.stream, err.name()).inc()
            self._burst.problem(
                f"delivery:{item.stream}",
                f"stream={item.stream} seq={item.seq} kind={kind} not delivered: {err.str()}",
            )

    def _children(self, stream: str, kind: str) -> tuple[Any, Any]:
        """Labelled metric children, looked up once per stream and kind (hot path)."""
        key = (stream, kind)
        found = self._metric_children.get(key)
        if found is None:
            found = (self.metrics.produced.labels(stream, kind),
                     self.metrics.bytes.labels(stream))
            self._metric_children[key] = found
        return found

    def _poll_loop(self) -> None:
        while not self._stop_poll.is_set():
            self._producer.poll(0.05)

    def close(self, timeout: float) -> None:
        """Send what is queued, flush within `timeout` seconds, drop (and count) the rest."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._sender.join(max(0.0, deadline - time.monotonic()))
        self._stop_poll.set()
        self._sender.join(1.0)
        self._poller.join(1.0)
        with self._cond:
            for stream, q in self._queues.items():
                if q:
                    self._drop(stream, m.SHUTDOWN, len(q))
                    q.clear()
        left = self._producer.flush(max(0.0, deadline - time.monotonic()))
        if left:
            log.warning("%d frame records not acknowledged within %.1fs; dropping", left, timeout)
            self._producer.purge(in_queue=True, in_flight=True)
            self._producer.flush(1.0)
        self.metrics.inflight_bytes.set(self._inflight)
