"""`deploy/kafka/kafka.sh` starts a broker in a small heap, every time.

Kafka's log cleaner allocates its dedupe map on the heap in one piece at start-up (default
`log.cleaner.dedupe.buffer.size` 128 MiB). With `-XX:+ExitOnOutOfMemoryError` the JVM then
exited mid-start whenever that allocation failed: sometimes in the outage tests' private brokers
(-Xmx256m; one CI run failed so), 4 starts in 11 at -Xmx160m, and every start at -Xmx128m. Our
server.properties sets 16 MiB, so a 128 MiB heap starts and serves."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from confluent_kafka import Producer

from evi.kafka import ensure_topics
from evi.topics import TopicSpec
from tests.helpers import consume_all
from tests.private_broker import private_broker

pytestmark = [pytest.mark.kafka]


def test_broker_starts_and_serves_in_a_128_mib_heap(tmp_path: Path) -> None:
    with private_broker(tmp_path / "cache", heap="-Xms64m -Xmx128m") as broker:
        kafka = broker.kafka
        topic = f"heap-{uuid.uuid4().hex[:8]}"
        assert ensure_topics(kafka, [TopicSpec(topic, partitions=1)]) == [topic]
        p = Producer(kafka.client_config())
        for i in range(20):
            p.produce(topic, key=b"k", value=f"v{i}".encode())
        assert p.flush(15) == 0
        got = [m.value() for m in consume_all(kafka, topic, require_all=True)]
        assert got == [f"v{i}".encode() for i in range(20)]
        out = (broker.root / "kafka" / "logs" / "kafka.out").read_text()
        assert "OutOfMemoryError" not in out
        props = (broker.root / "kafka" / "server.properties").read_text()
        assert "log.cleaner.dedupe.buffer.size=16777216" in props
