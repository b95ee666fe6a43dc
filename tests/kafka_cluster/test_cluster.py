"""A 3-node KRaft cluster (`kafka.sh cluster start 3`) loses the leader of a partition to SIGKILL
while records flow: producers with acks=all keep writing (min.insync.replicas=2 of RF 3), a
consumer keeps reading, and every record is read back exactly once, in order per partition; the
killed node, started again, rejoins every ISR."""

from __future__ import annotations

import threading
import time
import uuid
from collections import defaultdict
from pathlib import Path

import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from tests.helpers import wait_until
from tests.private_broker import PrivateCluster, private_cluster

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(240)]

PARTITIONS = 3
RATE = 150  # records per second, all partitions together


class Load:
    """A producer thread writing `<partition>:<seq>` to each partition in turn (acks=all,
    idempotent) and a consumer thread reading every partition from its start."""

    def __init__(self, cluster: PrivateCluster, topic: str) -> None:
        self.topic = topic
        client = cluster.kafka.client_config()  # librdkafka's log through Python logging
        self.producer = Producer(client | {
            "acks": "all", "enable.idempotence": True, "linger.ms": 5, "message.timeout.ms": 90_000,
        })  # fmt: skip
        self.consumer = Consumer(client | {
            "group.id": f"c-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False,
            "fetch.wait.max.ms": 100,
        })  # fmt: skip
        self.consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING)
                              for p in range(PARTITIONS)])  # fmt: skip
        self.sent = [0] * PARTITIONS  # next seq per partition
        self.acked: dict[int, list[tuple[int, bytes]]] = defaultdict(list)  # (offset, value)
        self.ack_times: dict[int, list[float]] = defaultdict(list)
        self.errors: list[str] = []
        self.read: dict[int, list[tuple[int, bytes]]] = defaultdict(list)
        self.lock = threading.Lock()
        self.producing = threading.Event()
        self.producing.set()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._produce, daemon=True),
                        threading.Thread(target=self._consume, daemon=True)]  # fmt: skip

    def _delivered(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self.errors.append(err.str())
            return
        p = msg.partition() or 0
        with self.lock:
            self.acked[p].append((msg.offset() or 0, bytes(msg.value() or b"")))
            self.ack_times[p].append(time.monotonic())

    def _produce(self) -> None:
        i = 0
        while self.producing.is_set():
            p = i % PARTITIONS
            self.producer.produce(self.topic, f"{p}:{self.sent[p]}".encode(), partition=p,
                                  on_delivery=self._delivered)  # fmt: skip
            self.sent[p] += 1
            i += 1
            self.producer.poll(0)
            time.sleep(1 / RATE)

    def _consume(self) -> None:
        while not self.stop.is_set():
            m = self.consumer.poll(0.2)
            if m is None or m.error():
                continue
            with self.lock:
                self.read[m.partition() or 0].append((m.offset() or 0, bytes(m.value() or b"")))

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def acked_count(self, p: int) -> int:
        with self.lock:
            return len(self.acked[p])

    def finish(self) -> None:
        """Stop producing, flush (every record acknowledged or failed), read up to the end."""
        self.producing.clear()
        self.threads[0].join(10)
        assert self.producer.flush(60) == 0, "records still unacknowledged after 60 s"
        wait_until(lambda: all(len(self.read[p]) >= self.acked_count(p)
                               for p in range(PARTITIONS)), 60, "the consumer to read every record")
        self.stop.set()
        self.threads[1].join(10)
        self.consumer.close()


def create_topic(cluster: PrivateCluster, topic: str) -> None:
    admin = AdminClient(cluster.kafka.client_config())
    fut = admin.create_topics([NewTopic(topic, PARTITIONS, replication_factor=3,
                                        config={"min.insync.replicas": "2"})])[topic]  # fmt: skip
    fut.result(30)

    def ready() -> bool:
        state = cluster.partitions(topic)
        return len(state) == PARTITIONS and all(len(s.isr) == 3 and s.leader > 0
                                                for s in state.values())  # fmt: skip

    wait_until(ready, 30,
               "every partition with a leader and 3 in-sync replicas")  # fmt: skip


def gaps(times: list[float], since: float) -> float:
    """Longest time between acknowledgements on a partition, from `since` on."""
    after = [t for t in times if t >= since]
    return max((b - a for a, b in zip([since, *after], after, strict=False)), default=0.0)


def test_leader_sigkill_loses_no_acknowledged_record_and_the_node_rejoins(tmp_path: Path,
                                                                         ) -> None:  # fmt: skip
    with private_cluster(tmp_path / "cache", size=3) as cluster:
        topic = f"c{uuid.uuid4().hex[:8]}"
        create_topic(cluster, topic)
        assert all(sorted(s.replicas) == cluster.nodes
                   for s in cluster.partitions(topic).values())
        load = Load(cluster, topic)
        load.start()
        wait_until(lambda: all(load.acked_count(p) >= 100 for p in range(PARTITIONS)), 30,
                   "100 acknowledged records per partition")  # fmt: skip

        victim = cluster.partitions(topic)[0].leader
        before = {p: load.acked_count(p) for p in range(PARTITIONS)}
        killed_at = time.monotonic()
        cluster.kill(victim)

        def failed_over() -> bool:
            state = cluster.partitions(topic)
            return (all(s.leader not in (victim, -1) and victim not in s.isr
                        for s in state.values())
                    and all(load.acked_count(p) >= before[p] + 100 for p in range(PARTITIONS)))

        wait_until(failed_over, 60, f"new leaders without node {victim}, and 100 more records "
                                    "acknowledged per partition")  # fmt: skip
        during = cluster.partitions(topic)
        assert all(len(s.isr) == 2 for s in during.values()), during
        assert cluster.leader_counts(topic)[victim] == 0
        stall = max(gaps(load.ack_times[p], killed_at) for p in range(PARTITIONS))

        restarted_at = time.monotonic()
        cluster.start()  # only the killed node is down: kafka.sh starts it and waits
        wait_until(lambda: all(victim in s.isr for s in cluster.partitions(topic).values()), 60,
                   f"node {victim} back in every ISR")  # fmt: skip
        rejoin_s = time.monotonic() - restarted_at
        time.sleep(1.0)  # a few records with all three replicas again
        load.finish()

        assert load.errors == []
        for p in range(PARTITIONS):
            want = [f"{p}:{i}".encode() for i in range(load.sent[p])]
            acked = sorted(load.acked[p])
            assert [v for _, v in acked] == want, f"partition {p}: acknowledged records"
            assert [o for o, _ in acked] == list(range(len(want))), f"partition {p}: offsets"
            assert load.read[p] == acked, f"partition {p}: read back != acknowledged"
        total = sum(load.sent)
        print(f"\nkilled leader node {victim}; {total} records, 0 lost, 0 duplicated; longest "
              f"acknowledgement gap {stall:.1f} s; node back in every ISR {rejoin_s:.1f} s "
              f"after `cluster start`; leaders now {cluster.leader_counts(topic)}")

