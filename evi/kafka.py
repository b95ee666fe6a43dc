"""Kafka plumbing every service shares: topic creation, broker checks, consumer lag."""

from __future__ import annotations

import time
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from evi.settings import KafkaSettings
from evi.topics import TopicSpec

# librdkafka's codes for "no broker answered"; any other error came from a broker that did.
_UNREACHABLE = frozenset({
    KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._TIMED_OUT,
    KafkaError._RESOLVE, KafkaError._WAIT_COORD,
})  # fmt: skip


def unreachable(e: KafkaException) -> bool:
    err = e.args[0] if e.args else None
    return isinstance(err, KafkaError) and err.code() in _UNREACHABLE


def explain(kafka: KafkaSettings, e: KafkaException, waited_s: float) -> str:
    """One line for a Kafka call that failed: an unreachable broker says so, with how long it
    was given; any other error is librdkafka's text."""
    if unreachable(e):
        return f"Kafka at {kafka.bootstrap_servers} does not answer (gave up after {waited_s:g} s)"
    err = e.args[0] if e.args else e
    text = err.str() if isinstance(err, KafkaError) else str(err)
    return f"Kafka at {kafka.bootstrap_servers}: {text}"


def admin(kafka: KafkaSettings) -> AdminClient:
    """A short-lived admin client: its librdkafka log lines are queued until poll(), so a
    client kept for long must be polled (or its queue grows while the broker is away)."""
    return AdminClient(kafka.client_config())


def broker_answers(kafka: KafkaSettings, timeout: float = 2.0) -> bool:
    try:
        admin(kafka).list_topics(timeout=timeout)
        return True
    except KafkaException:
        return False


def wait_for_broker(kafka: KafkaSettings, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not broker_answers(kafka, min(2.0, max(0.1, deadline - time.monotonic()))):
        if time.monotonic() > deadline:
            raise TimeoutError(f"Kafka at {kafka.bootstrap_servers} does not answer (gave up "
                               f"after {timeout:g} s)")
        time.sleep(0.5)


def ensure_topics(kafka: KafkaSettings, specs: list[TopicSpec], timeout: float = 30.0) -> list[str]:
    """Create the topics that do not exist yet; return the names created."""
    client = admin(kafka)
    existing = set(client.list_topics(timeout=timeout).topics)
    missing = [s for s in specs if s.name not in existing]
    if not missing:
        return []
    futures = client.create_topics(
        [NewTopic(s.name, num_partitions=s.partitions, replication_factor=s.replication_factor,
                  config=s.config)
         for s in missing],
        operation_timeout=timeout,
    )
    created = []
    for name, fut in futures.items():
        try:
            fut.result()
            created.append(name)
        except KafkaException as e:
            if e.args[0].name() != "TOPIC_ALREADY_EXISTS":
                raise
    return created


def partitions_of(kafka: KafkaSettings, topic: str, timeout: float = 10.0) -> int:
    md = admin(kafka).list_topics(topic, timeout=timeout)
    t = md.topics.get(topic)
    if t is None or t.error is not None:
        raise KeyError(f"topic {topic!r} does not exist")
    return len(t.partitions)


def watermarks(c: Consumer, topic: str, partitions: list[int],
               timeout: float = 10.0) -> dict[int, tuple[int, int]]:
    """Per partition, (log start, end offset), asked of the broker (not the client's cache)."""
    return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout, cached=False)
            for p in partitions}  # fmt: skip


def offsets_at(c: Consumer, topic: str, partitions: list[int], ms: int,
               timeout: float = 10.0) -> dict[int, int]:
    """Per partition, the first offset whose timestamp is at or after `ms`, else (no record that
    recent: Kafka answers -1) the end offset as it was *before* the question, so a record that
    arrives while we ask is never skipped. A partition's error raises KafkaException."""
    ends = {p: high for p, (_, high) in watermarks(c, topic, partitions, timeout).items()}
    out: dict[int, int] = {}
    for tp in c.offsets_for_times([TopicPartition(topic, p, ms) for p in partitions], timeout):
        if tp.error is not None:
            raise KafkaException(tp.error)
        out[tp.partition] = tp.offset if tp.offset >= 0 else ends[tp.partition]
    return out


@dataclass(frozen=True)
class PartitionLag:
    partition: int
    committed: int  # -1 when the group has no commit for it
    end: int
    start: int

    @property
    def lag(self) -> int:
        """Kafka's lag: end - committed; with no commit, what an `earliest` reset would see."""
        base = self.committed if self.committed >= 0 else self.start
        return max(0, self.end - base)


def group_lag(
    kafka: KafkaSettings, group: str, topic: str, timeout: float = 10.0
) -> list[PartitionLag]:
    """Committed offsets of `group` on `topic` against each partition's end offset."""
    c = group_reader(kafka, group)
    try:
        return lag_of(c, topic, timeout)
    finally:
        c.close()


def group_reader(kafka: KafkaSettings, group: str) -> Consumer:
    """A consumer that only reads `group`'s committed offsets: it never subscribes, so it never
    joins the group."""
    return Consumer(kafka.client_config() | {"group.id": group, "enable.auto.commit": False})


def lag_of(c: Consumer, topic: str, timeout: float = 10.0) -> list[PartitionLag]:
    """Lag of the group `c` was made for (group_reader) on `topic`; KeyError if it is missing."""
    t = c.list_topics(topic, timeout=timeout).topics.get(topic)
    if t is None or t.error is not None or not t.partitions:
        raise KeyError(f"topic {topic!r} does not exist")
    n = len(t.partitions)
    committed = c.committed([TopicPartition(topic, p) for p in range(n)], timeout=timeout)
    marks = watermarks(c, topic, list(range(n)), timeout)
    return [PartitionLag(tp.partition, tp.offset if tp.offset >= 0 else -1,
                         marks[tp.partition][1], marks[tp.partition][0])
            for tp in committed]  # fmt: skip
