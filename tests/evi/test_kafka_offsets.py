"""`evi.kafka.offsets_at` on the real broker: where a time-based start lands per partition."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from evi.kafka import ensure_topics, offsets_at
from evi.settings import KafkaSettings
from evi.topics import TopicSpec

pytestmark = pytest.mark.kafka


def test_first_offset_at_or_after_the_time_else_the_end(kafka: KafkaSettings) -> None:
    topic = f"t{uuid.uuid4().hex[:10]}.offsets"
    ensure_topics(kafka, [TopicSpec(topic, 3, {"message.timestamp.type": "CreateTime"})])
    p = Producer(kafka.client_config())
    for ts in (1000, 2000, 2000, 3000):  # partition 0: offsets 0-3
        p.produce(topic, b"x", partition=0, timestamp=ts)
    p.produce(topic, b"x", partition=1, timestamp=500)  # partition 1: offset 0; 2 stays empty
    assert p.flush(10) == 0
    c = Consumer(kafka.client_config() | {"group.id": f"t-{uuid.uuid4().hex}"})
    try:
        assert offsets_at(c, topic, [0, 1, 2], 0) == {0: 0, 1: 0, 2: 0}
        assert offsets_at(c, topic, [0, 1, 2], 1500) == {0: 1, 1: 1, 2: 0}
        assert offsets_at(c, topic, [0, 1, 2], 2000) == {0: 1, 1: 1, 2: 0}  # "at" counts
        assert offsets_at(c, topic, [0, 1, 2], 2001) == {0: 3, 1: 1, 2: 0}
        assert offsets_at(c, topic, [0, 1], 9999) == {0: 4, 1: 1}  # none that recent: the end
        with pytest.raises(KafkaException):
            offsets_at(c, topic, [0, 7], 1500, timeout=5)  # no partition 7
    finally:
        c.close()


class _GrowingPartition:
    """A consumer whose partition gains a record between any two questions: the race a real
    broker has when records arrive while a reader looks for its start."""

    def __init__(self) -> None:
        self.end = 5

    def get_watermark_offsets(self, tp: TopicPartition, timeout: float,
                              cached: bool) -> tuple[int, int]:
        self.end += 1
        return 0, self.end - 1

    def offsets_for_times(self, tps: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        self.end += 1
        return [TopicPartition(tp.topic, tp.partition, -1) for tp in tps]


def test_a_record_arriving_while_the_start_is_looked_up_is_not_skipped() -> None:
    c = _GrowingPartition()
    # The end before the question (5), not after it: offset 5 arrived while we asked.
    assert offsets_at(c, "t", [0], 10**12) == {0: 5}  # type: ignore[arg-type]
