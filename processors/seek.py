"""`--from <time>`: a new consumer group starts at the frames of that time, not at the beginning.

On each rebalance, before faust resumes fetching (its `on_rebalance_complete` signal comes while
the partitions are still paused, just before it seeks them to their committed offsets), every
partition the group has no commit for and this worker has not started yet is sought to the first
offset at or after the time (ListOffsets by timestamp, confluent-kafka's `offsets_for_times`), or
to its end when nothing is that recent. Partitions with a commit keep it: a restarted replay
resumes where it stopped, it does not start over.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import datetime

from confluent_kafka import Consumer, KafkaException, TopicPartition
from faust.types import TP, ConsumerT

from evi.settings import KafkaSettings

log = logging.getLogger("evi.processor")


def offsets_for_time(
    kafka: KafkaSettings, topic: str, partitions: list[int], when: datetime, timeout: float = 10.0
) -> dict[int, int]:
    """First offset at or after `when` per partition; the end offset where there is none."""
    ms = int(when.timestamp() * 1000)
    c = Consumer(kafka.client_config() | {"group.id": "evi-offsets-for-times"})
    try:
        asked = [TopicPartition(topic, p, ms) for p in partitions]
        found = c.offsets_for_times(asked, timeout=timeout)
        out: dict[int, int] = {}
        for tp in found:
            if tp.error is not None:
                raise KafkaException(tp.error)
            if tp.offset < 0:  # no record that recent
                _, high = c.get_watermark_offsets(
                    TopicPartition(topic, tp.partition), timeout=timeout, cached=False
                )
                out[tp.partition] = high
            else:
                out[tp.partition] = tp.offset
        return out
    finally:
        c.close()


class StartFrom:
    def __init__(self, kafka: KafkaSettings, topic: str, when: datetime) -> None:
        self.kafka = kafka
        self.topic = topic
        self.when = when
        self.started: set[int] = set()

    async def seek(self, consumer: ConsumerT, committed: Mapping[TP, int | None]) -> None:
        fresh = sorted(
            tp.partition
            for tp, off in committed.items()
            if tp.topic == self.topic
            and tp.partition not in self.started
            and (off is None or off <= 0)
        )
        self.started.update(tp.partition for tp in committed if tp.topic == self.topic)
        if not fresh:
            return
        offsets = await asyncio.to_thread(
            offsets_for_time, self.kafka, self.topic, fresh, self.when
        )
        for p, offset in sorted(offsets.items()):
            tp = next(tp for tp in committed if tp.topic == self.topic and tp.partition == p)
            await consumer.seek(tp, offset)
            log.info("start from %s: tp=%s[%d] offset=%d", self.when.isoformat(), self.topic,
                     p, offset)  # fmt: skip
