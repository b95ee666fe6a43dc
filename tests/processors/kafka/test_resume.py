"""Where a partition resumes after a rebalance (processors/seek.py): the start a partition with no
commit gets, on the real broker, and what `Resume` commits and seeks on a stand-in consumer."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest
from faust.types import TP

from evi.settings import KafkaSettings
from evi.topics import Topics
from processors.seek import Resume, start_offsets
from tests.processors.kafka.util import produce

pytestmark = pytest.mark.kafka


class FakeConsumer:
    """The calls `Resume` makes on faust's consumer, and the group's commits it reads."""

    def __init__(self, committed: dict[TP, int | None]) -> None:
        self.committed = committed
        self.commits: list[dict[TP, int]] = []
        self.seeks: list[tuple[int, int]] = []

    async def seek_to_committed(self) -> dict[TP, int | None]:
        return dict(self.committed)

    async def seek(self, tp: TP, offset: int) -> None:
        self.seeks.append((tp.partition, offset))

    async def _commit_offsets(self, offsets: dict[TP, int]) -> bool:
        self.commits.append(dict(offsets))
        self.committed.update(offsets)
        return True


def test_start_offsets_follow_the_policy_and_the_time(kafka: KafkaSettings, topics: Topics) -> None:
    frames = topics.frames("face")
    t0 = int(time.time() * 1000) - 60_000
    produce(kafka, frames, ["a"], range(3), partitions=4, ts_ms=t0)  # partition 0: seqs at t0+100s
    assert start_offsets(kafka, frames, [0, 1], "earliest") == {0: 0, 1: 0}
    assert start_offsets(kafka, frames, [0, 1], "latest") == {0: 3, 1: 0}
    at_seq_1 = datetime.fromtimestamp((t0 + 100) / 1000, UTC)
    assert start_offsets(kafka, frames, [0, 1], "earliest", at_seq_1) == {0: 1, 1: 0}
    later = datetime.fromtimestamp(time.time() + 3600, UTC)
    assert start_offsets(kafka, frames, [0], "earliest", later) == {0: 3}  # nothing that recent


async def test_resume_commits_a_start_for_new_partitions_and_seeks_zero(
    kafka: KafkaSettings, topics: Topics
) -> None:
    frames = topics.frames("face")
    produce(kafka, frames, ["a", "b"], range(2), partitions=4)  # 2 frames on partitions 0 and 1
    tps = [TP(frames, p) for p in range(4)]
    consumer: Any = FakeConsumer({tps[0]: 0, tps[1]: None, tps[2]: 7, tps[3]: None})
    resume = Resume(kafka, frames, "latest")
    committed = await resume.on_assigned(consumer)
    # The end offset for the partitions with no commit (latest), committed once and sought;
    # the commit of 0 sought too (aiokafka would not), the commit of 7 left to aiokafka.
    assert consumer.commits == [{tps[1]: 2, tps[3]: 0}]
    assert consumer.seeks == [(0, 0), (1, 2), (3, 0)]
    assert committed == {tps[0]: 0, tps[1]: 2, tps[2]: 7, tps[3]: 0}
    # The next rebalance finds commits everywhere: nothing to commit, 0s still sought (faust's
    # perform_seek calls the same installed seek_to_committed).
    consumer.seeks.clear()
    await resume.on_assigned(consumer)
    assert consumer.commits == [{tps[1]: 2, tps[3]: 0}]
    assert consumer.seeks == [(0, 0), (3, 0)]
