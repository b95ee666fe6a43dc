"""The gateway's one Kafka consumer, on its own thread.

Manual assignment, no consumer group: every replica reads every stream. Frames and results
topics start at their end when the gateway starts; the stream registry from its beginning.
Every `metadata_refresh_s` the thread looks for topics and partitions that appeared since (a new
kind, more partitions) and reads them from the moment it last looked, so nothing created after
start is missed. Kafka going away never ends the thread: librdkafka reconnects by itself, and a
consumer that cannot be set up is retried; a consumer replaced after a failure goes on from where
the last one was, so a restart of the feed skips no record.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Message, TopicPartition

from evi.kafka import offsets_at, watermarks
from evi.topics import Topics
from gateway.health import FeedHealth
from gateway.settings import GatewaySettings

log = logging.getLogger("evi.gateway.feed")

Batch = list[Message]
KIND = re.compile(r"^[a-z][a-z0-9-]{0,31}$")  # evi.topics.check_kind's rule


def kinds_in(names: Iterable[str], topics: Topics, wanted: list[str]) -> list[str]:
    """Kinds whose frames or results topic exists (only `wanted` ones, if any are given)."""
    found = set()
    for name in names:
        for head in (f"{topics.prefix}.frames.", f"{topics.prefix}.results."):
            kind = name[len(head) :]
            if name.startswith(head) and KIND.match(kind):
                found.add(kind)
    return sorted(found & set(wanted) if wanted else found)


class Feed:
    """Polls Kafka and hands each batch to `on_batch` (called on the polling thread)."""

    def __init__(
        self,
        s: GatewaySettings,
        on_batch: Callable[[Batch], None],
        on_idle: Callable[[], None],
        on_assigned: Callable[[], None],
        health: FeedHealth | None = None,
    ) -> None:
        self.s = s
        self.health = health or FeedHealth(s.feed_stall_s)
        self.topics = Topics(s.topics)
        self.on_batch = on_batch
        self.on_idle = on_idle
        self.on_assigned = on_assigned
        self.kinds: tuple[str, ...] = ()
        self.partitions: dict[str, int] = {}  # assigned topic -> partitions
        self.records = 0
        self.restarts = 0
        self.replaced_after_metadata_failure = 0  # clients given up after a failed refresh
        self._next: dict[tuple[str, int], int] = {}  # next offset per partition handed over
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="gateway-feed", daemon=True)
        self._thread.start()

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout)

    def _consumer(self) -> Consumer:
        fetch = self.s.topics.max_message_bytes + (64 << 10)
        cfg: dict[str, Any] = self.s.kafka.client_config() | {
            "group.id": f"evi-gateway-{uuid.uuid4().hex[:12]}",  # never joined: manual assign
            "enable.auto.commit": False,
            "auto.offset.reset": "latest",  # only after an offset went out of range
            # librdkafka's prefetch is the gateway's biggest buffer, and a flood of small records
            # it lags behind would fill it to the defaults: 100,000 messages per partition (with
            # ~0.5 kB of overhead each, not counted in the 64 MiB of payload). Bounded here to
            # 5,000 messages per partition and 32 MiB: RSS stays flat, and at 100 streams of
            # 30 fps x 35 kB that is still ~300 ms ahead.
            "queued.min.messages": 5000,
            "queued.max.messages.kbytes": 32 << 10,
            "fetch.max.bytes": max(16 << 20, fetch),
            "max.partition.fetch.bytes": fetch,
            "fetch.wait.max.ms": 50,
            "topic.metadata.refresh.interval.ms": 10_000,
            "reconnect.backoff.max.ms": 2000,
        }
        return Consumer(cfg, logger=log)

    def _wanted(self, c: Consumer) -> dict[str, int]:
        """Topics to read now and their partition counts."""
        md = c.list_topics(timeout=5)
        existing = {name: t for name, t in md.topics.items() if t.error is None}
        kinds = kinds_in(existing, self.topics, self.s.kinds)
        self.kinds = tuple(kinds)
        names = [self.topics.frames(k) for k in kinds] + [self.topics.results(k) for k in kinds]
        out = {n: len(existing[n].partitions) for n in names if n in existing}
        if self.topics.streams in existing:
            out[self.topics.streams] = len(existing[self.topics.streams].partitions)
        return out

    def _start_offsets(
        self, c: Consumer, topic: str, parts: list[int], since_ms: int | None
    ) -> list[TopicPartition]:
        """Where the last consumer stopped, else from the end now (since_ms None) or from the
        first record at/after since_ms."""
        saved = {p: self._next[topic, p] for p in parts if (topic, p) in self._next}
        rest = [p for p in parts if p not in saved]
        if not rest:
            at = {}
        elif topic == self.topics.streams:
            at = dict.fromkeys(rest, OFFSET_BEGINNING)
        elif since_ms is None:
            at = {p: high for p, (_, high) in watermarks(c, topic, rest, 5).items()}
        else:  # a partition's error raises: the next metadata look retries from the same time
            at = offsets_at(c, topic, rest, since_ms, 5)
        for p, o in at.items():
            if o >= 0:  # resolved now: a replacement consumer starts here too
                self._next[topic, p] = o
        return [TopicPartition(topic, p, o) for p, o in (saved | at).items()]

    def _assign_new(self, c: Consumer, since_ms: int | None) -> int:
        wanted = self._wanted(c)
        new: list[TopicPartition] = []
        for topic, n in wanted.items():
            have = self.partitions.get(topic, 0)
            if n > have:
                new += self._start_offsets(c, topic, list(range(have, n)), since_ms)
        if new:
            c.incremental_assign(new)
            for topic, n in wanted.items():
                self.partitions[topic] = max(n, self.partitions.get(topic, 0))
            if since_ms is not None:
                log.info("reading new topic partitions: %s",
                         ", ".join(sorted({f"{tp.topic}[{tp.partition}]" for tp in new})))
        return len(new)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.health.tick()
            c: Consumer | None = None
            try:
                c = self._consumer()
                self.partitions = {}
                looked_ms = int(time.time() * 1000)
                self._assign_new(c, None)
                if not self.partitions:
                    log.warning("no %s.* topics yet; run `evi kafka topics`", self.topics.prefix)
                self.on_assigned()
                self._poll(c, looked_ms)
            except KafkaException as e:
                log.warning("gateway cannot reach Kafka: %s; retrying", e)
                self._stop.wait(2.0)
            except Exception:  # a dead feed would serve nothing while looking alive
                log.exception("gateway Kafka consumer failed; starting a new one")
                self.restarts += 1
                self._stop.wait(2.0)
            finally:
                if c is not None:
                    c.close()

    def _poll(self, c: Consumer, looked_ms: int) -> None:
        next_look = time.monotonic() + self.s.metadata_refresh_s
        while not self._stop.is_set():
            self.health.tick()
            # consume() waits its whole timeout unless the batch fills up: take what is there
            # now, else block in poll(), which returns as soon as one record arrives.
            batch = c.consume(num_messages=500, timeout=0)
            if not batch:
                first = c.poll(0.1)  # a Message is falsy when its value is empty: ask for None
                batch = [] if first is None else [first, *c.consume(num_messages=499, timeout=0)]
            if batch:
                self.records += len(batch)
                self.on_batch(batch)
                for m in batch:  # handed over: a replacement consumer starts after these
                    if m.error() is None:
                        self._next[m.topic() or "", m.partition() or 0] = (m.offset() or 0) + 1
            else:
                self.on_idle()
            if time.monotonic() >= next_look:
                now_ms = int(time.time() * 1000)
                try:
                    # Records of topics created since the last look start after it, minus slack
                    # for clocks: a topic's first seconds are never skipped.
                    self._assign_new(c, looked_ms - 2000)
                    looked_ms = now_ms
                except KafkaException as e:
                    # This client is replaced (the caller makes a new one, which resumes at the
                    # handed-over offsets): after a broker restart a librdkafka client could stay
                    # disconnected for 30 s and more while a new one connected at once (CI).
                    self.replaced_after_metadata_failure += 1
                    log.warning("metadata refresh failed (Kafka away?): %s; new consumer", e)
                    raise
                next_look = time.monotonic() + self.s.metadata_refresh_s
