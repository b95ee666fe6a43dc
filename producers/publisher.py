"""Frames to Kafka without ever growing memory, and without blocking live capture.

Each stream has a small bounded queue in front of librdkafka. What happens when it is full is the
stream's `Backpressure` policy: DROP_OLDEST (live sources, and recorded ones paced in real time)
pushes the oldest pending frame out (counted as `queue_full`); WAIT (recorded sources read as fast
as possible) blocks the capture thread until there is room, at most `block_timeout_s`, and only then
drops the oldest. One sender thread moves frames from the queues into librdkafka while the bytes
handed over and not yet acknowledged stay under `max_inflight_bytes`; one poll thread serves
delivery callbacks. A frame with several kinds is one queue entry and one record per kind topic
(same JPEG bytes, same headers).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from evi.settings import KafkaSettings
from producers import metrics as m
from producers.burst import BurstLog
from producers.metrics import ProducerMetrics
from producers.settings import PublisherSettings

log = logging.getLogger("evi.producer.publisher")

RECORD_OVERHEAD = 512  # key, headers and record framing, generously
_PURGED = {KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT}
_TOO_LARGE = KafkaError.MSG_SIZE_TOO_LARGE  # client-side or broker-side (topic limit)


class Backpressure(Enum):
    """What a stream does when its queue in front of librdkafka is full."""

    DROP_OLDEST = "drop-oldest"  # stay current: the newest frame replaces the oldest pending one
    WAIT = "wait"  # stay complete: block the capture thread for room (bounded), then drop oldest


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
    kafka: KafkaSettings,
    s: PublisherSettings,
    max_message_bytes: int,
    client_id: str,
    batch_limit: int | None = None,
) -> dict[str, Any]:
    """librdkafka settings for 30-200 KB frames: acks=all, idempotent, uncompressed JPEG.

    `batch_limit`: the smallest max.message.bytes of the topics written; the broker checks a
    whole batch against it, so batches must not grow past it."""
    batch = min(s.batch_size, max_message_bytes, batch_limit or max_message_bytes)
    return kafka.client_config() | {
        "client.id": client_id,
        "acks": "all",
        "enable.idempotence": True,
        "max.in.flight.requests.per.connection": 5,
        "compression.type": "none",  # JPEG does not compress
        "linger.ms": s.linger_ms,
        "batch.size": batch,
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
        topic_limits: Mapping[str, int] | None = None,
    ) -> None:
        self.settings = settings
        self.max_message_bytes = max_message_bytes
        # Topics whose max.message.bytes is below max_message_bytes: a record over it would be
        # refused by the broker together with the rest of its batch, so it is never sent.
        self._limits = {t: n for t, n in (topic_limits or {}).items() if n < max_message_bytes}
        self.metrics = metrics
        self._producer = producer_factory(config)
        # One lock; the sender waits on `_work` (a frame queued, or in-flight room while frames
        # wait), a WAIT submitter on its stream's `_room`, so each wake-up goes only to a thread
        # that can use it.
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)
        self._room: dict[str, threading.Condition] = {}
        self._sender_blocked = False  # frames are queued but the in-flight cap is reached
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
        with self._lock:
            self._queues.setdefault(stream, deque())
            self._room.setdefault(stream, threading.Condition(self._lock))
            self._stats.setdefault(stream, StreamStats())
            if stream not in self._order:
                self._order.append(stream)

    def stats(self, stream: str) -> StreamStats:
        with self._lock:
            s = self._stats[stream]
            return StreamStats(s.frames, s.records, s.acked, Counter(s.dropped))

    def queued(self, stream: str) -> int:
        with self._lock:
            return len(self._queues[stream])

    @property
    def inflight_bytes(self) -> int:
        return self._inflight

    def _drop(self, stream: str, reason: str, n: int = 1) -> None:
        """Count a dropped frame; caller holds the lock."""
        self._stats[stream].dropped[reason] += n
        self.metrics.dropped.labels(stream, reason).inc(n)

    def submit(
        self,
        item: Pending,
        policy: Backpressure = Backpressure.DROP_OLDEST,
        cancel: threading.Event | None = None,
    ) -> bool:
        """Queue a frame; when the stream's queue is full apply `policy` (see Backpressure).

        A WAIT stops waiting when `cancel` is set or the publisher closes (the frame is then
        refused and counted as `shutdown`). False if the frame was refused (too large, closing).
        """
        size = len(item.value) + RECORD_OVERHEAD
        with self._lock:
            st = self._stats[item.stream]
            st.frames += 1
            st.records += len(item.targets)
            q = self._queues[item.stream]
            if size > self.max_message_bytes:
                self._drop(item.stream, m.TOO_LARGE)
            else:
                if policy is Backpressure.WAIT and not self._wait_for_room(item.stream, cancel):
                    self._drop(item.stream, m.SHUTDOWN)
                    return False
                if self._closing:
                    self._drop(item.stream, m.SHUTDOWN)
                    return False
                if len(q) >= self.settings.queue_frames:
                    q.popleft()
                    self._drop(item.stream, m.QUEUE_FULL)
                q.append(item)
                self._work.notify()
                return True
        self._too_large(item.stream, item.seq, len(item.value),
                        f"the topic limit {self.max_message_bytes}")
        return False

    def _wait_for_room(self, stream: str, cancel: threading.Event | None) -> bool:
        """Wait until `q` has room or `block_timeout_s` passes (True either way); False when
        cancelled or closing while waiting. Wake-ups for other streams only re-check: the
        bound is a deadline, not a number of wake-ups."""
        q, room = self._queues[stream], self._room[stream]
        deadline = time.monotonic() + self.settings.block_timeout_s
        while len(q) >= self.settings.queue_frames:
            if self._closing or (cancel is not None and cancel.is_set()):
                return False
            left = deadline - time.monotonic()
            if left <= 0:
                return True  # bounded: the caller drops the oldest frame
            room.wait(min(left, 0.05))  # 0.05: notice `cancel` soon
        return True

    def _too_large(self, stream: str, seq: int, nbytes: int, limit: str) -> None:
        self._burst.problem(
            f"too-large:{stream}",
            f"stream={stream} seq={seq} frame is {nbytes} bytes, over {limit}: "
            "lower --quality or --width/--height",
        )

    def _next(self) -> Pending | None:
        """Round-robin over streams: the oldest frame that fits the in-flight cap; holds lock."""
        for _ in range(len(self._order)):
            stream = self._order[0]
            self._order.rotate(-1)
            q = self._queues[stream]
            if q and (self._inflight == 0 or self._inflight + q[0].cost
                      <= self.settings.max_inflight_bytes):
                item = q.popleft()
                self._room[stream].notify()  # its capture thread may wait for room
                self._inflight += item.cost
                self.max_inflight_seen = max(self.max_inflight_seen, self._inflight)
                return item
        return None

    def _send_loop(self) -> None:
        while True:
            with self._lock:
                item = self._next()
                while item is None:
                    queued = any(self._queues.values())
                    if self._closing and not queued:
                        return
                    self._sender_blocked = queued
                    self._work.wait(0.05)
                    self._sender_blocked = False
                    if self._closing and self._stop_poll.is_set():
                        return
                    item = self._next()
            self.metrics.inflight_bytes.set(self._inflight)
            for kind, topic in item.targets:
                self._produce(item, kind, topic)

    def _produce(self, item: Pending, kind: str, topic: str) -> None:
        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            self._delivered(item, kind, err)

        limit = self._limits.get(topic)
        if limit is not None and len(item.value) + RECORD_OVERHEAD > limit:
            self._delivered(item, kind, KafkaError(_TOO_LARGE))
            return
        for _ in range(1000):  # librdkafka's own queue full: bounded retry while it drains
            try:
                self._producer.produce(
                    topic, item.value, item.stream.encode(), headers=item.headers,
                    on_delivery=on_delivery,
                )
                return
            except BufferError:
                if self._stop_poll.is_set():  # closing and the flush time is up
                    self._delivered(item, kind, KafkaError(KafkaError._PURGE_QUEUE))
                    return
                time.sleep(0.005)
            except KafkaException as e:  # refused at once (e.g. too large): count, keep sending
                self._delivered(item, kind, e.args[0])
                return
        self._delivered(item, kind, KafkaError(KafkaError._QUEUE_FULL))

    def _delivered(self, item: Pending, kind: str, err: KafkaError | None) -> None:
        code = err.code() if err is not None else None
        with self._lock:
            self._inflight -= len(item.value)
            st = self._stats[item.stream]
            if err is None:
                st.acked += 1
            elif code in _PURGED:
                self._drop(item.stream, m.SHUTDOWN)
            else:
                self._drop(item.stream, m.TOO_LARGE if code == _TOO_LARGE else m.DELIVERY)
            if self._sender_blocked:  # in-flight room for the frames waiting
                self._work.notify()
        if err is None:
            produced, nbytes = self._children(item.stream, kind)
            produced.inc()
            nbytes.inc(len(item.value))
            self.metrics.delivery_seconds.observe(time.monotonic() - item.t_capture)
            if self._burst.pending(f"delivery:{item.stream}"):
                self._burst.resolved(f"delivery:{item.stream}", f"stream={item.stream} delivering")
        elif code == _TOO_LARGE:
            self.metrics.delivery_errors.labels(item.stream, err.name()).inc()
            topic = dict(item.targets)[kind]
            self._too_large(item.stream, item.seq, len(item.value), f"the limit of {topic}")
        elif code not in _PURGED:
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
        with self._lock:
            self._closing = True
            self._work.notify()
            for room in self._room.values():
                room.notify_all()
        self._sender.join(max(0.0, deadline - time.monotonic()))
        self._stop_poll.set()
        self._sender.join(1.0)
        self._poller.join(1.0)
        with self._lock:
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
