"""Where each assigned partition resumes after a rebalance: its committed offset, sought for sure.

faust drops records it fetched while its flow was stopped (a rebalance in progress) and relies on
seeking back to the committed offsets to read them again (faust/transport/consumer.py `getmany`,
"Seek back to committed offsets"; also `perform_seek` on every resume). That seek back misses two
cases, and the dropped frames are then never read: aiokafka's `seek_to_committed` seeks only to a
commit above 0, and a partition the group never committed has nothing to seek to, so its fetch
position stays past the dropped records. faust then also commits past them: with no commit known
it has no gap check (docs/processors.md). The autoscale test lost the first four frames of a new
partition this way, written while a scale-in rebalance was under way.

So, on each rebalance, before faust resumes fetching (its `on_rebalance_complete` signal comes
while the partitions are still paused): every partition the group has no commit for gets one at
its start — the reset policy's end (`earliest`: the log start; `latest`: the end offset) or, with
`--from`, the first offset at or after that time (ListOffsets by timestamp) — and the consumer's
`seek_to_committed` also seeks to a commit of 0. Partitions with a commit keep it: a restarted
replay resumes where it stopped, it does not start over.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any, Literal

from confluent_kafka import Consumer
from faust.types import TP

from evi.kafka import offsets_at, watermarks
from evi.settings import KafkaSettings

log = logging.getLogger("evi.processor")

Policy = Literal["earliest", "latest"]


def start_offsets(
    kafka: KafkaSettings, topic: str, partitions: list[int], policy: Policy,
    when: datetime | None = None, timeout: float = 10.0, group: str = "evi-processor",
) -> dict[int, int]:  # fmt: skip
    """Where a partition with no commit starts: the first offset at or after `when` (the end when
    nothing is that recent), else the log start (`earliest`) or the end offset (`latest`)."""
    # Never joined or committed; named under the group's prefix, which its ACLs cover.
    c = Consumer(kafka.client_config() | {"group.id": f"{group}-start-offsets"})
    try:
        if when is not None:
            return offsets_at(c, topic, partitions, int(when.timestamp() * 1000), timeout)
        marks = watermarks(c, topic, partitions, timeout)
        return {p: low if policy == "earliest" else high for p, (low, high) in marks.items()}
    finally:
        c.close()


class Resume:
    """Commits a start for every partition the group has none for; seeks commits of 0."""

    def __init__(self, kafka: KafkaSettings, topic: str, policy: Policy,
                 when: datetime | None = None, group: str = "evi-processor") -> None:  # fmt: skip
        self.kafka = kafka
        self.group = group
        self.topic = topic
        self.policy = policy
        self.when = when
        self._installed: Any = None

    def install(self, consumer: Any) -> None:
        """Make the consumer's `seek_to_committed` (faust's `perform_seek` calls it on every
        resume and after dropping records) seek to a commit of 0 as well."""
        original: Callable[[], Awaitable[Mapping[TP, int | None]]] = consumer.seek_to_committed

        async def seek_to_committed() -> Mapping[TP, int | None]:
            committed = await original()
            for tp, offset in committed.items():
                if offset == 0:  # aiokafka seeks only to `offset > 0`
                    await consumer.seek(tp, 0)
            return committed

        consumer.seek_to_committed = seek_to_committed
        self._installed = consumer

    async def on_assigned(self, consumer: Any) -> dict[TP, int | None]:
        """The group's commit for each assigned partition, after giving new ones theirs."""
        if self._installed is not consumer:  # the first rebalance: before faust's perform_seek
            self.install(consumer)
        committed: dict[TP, int | None] = dict(await consumer.seek_to_committed())
        mine = (tp for tp, off in committed.items() if tp.topic == self.topic and off is None)
        fresh = sorted(mine)  # no commit yet
        if not fresh:
            return committed
        starts = await asyncio.to_thread(start_offsets, self.kafka, self.topic,
                                         [tp.partition for tp in fresh], self.policy, self.when,
                                         10.0, self.group)  # fmt: skip
        offsets = {tp: starts[tp.partition] for tp in fresh}
        # faust's own commit path: its bookkeeping and our CommitMonitor see the commit.
        await consumer._commit_offsets(offsets)
        for tp, offset in offsets.items():
            await consumer.seek(tp, offset)
        committed.update(offsets)
        log.info("%s: committed a start for the partitions with none (%s): %s", self.topic,
                 f"from {self.when.isoformat()}" if self.when else self.policy,
                 ", ".join(f"{tp.partition}@{off}" for tp, off in offsets.items()))
        return committed
