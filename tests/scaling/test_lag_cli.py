"""`evi lag` on the real broker: offsets, members and the plan, as a table and as JSON."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from evi.settings import KafkaSettings
from evi.topics import Topics
from tests.helpers import REPO, common

pytestmark = pytest.mark.kafka


def evi_lag(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "evi.cli", "lag", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60)


def test_lag_and_plan_of_a_group_with_a_backlog(kafka: KafkaSettings, topics: Topics) -> None:
    frames, group = topics.frames("face"), topics.group("face")
    p = Producer(kafka.client_config())
    for i in range(100):  # lag counts records, whatever they hold
        p.produce(frames, key=b"s", value=b"x", partition=i % 4)
    assert p.flush(10) == 0
    # The group has committed 10 records of partition 0 and nothing elsewhere.
    c = Consumer(kafka.client_config() | {"group.id": group, "enable.auto.commit": False})
    c.commit(offsets=[TopicPartition(frames, 0, 10)], asynchronous=False)
    c.close()
    flags = common(kafka, topics.prefix)

    done = evi_lag(*flags, "--json", "--lag-threshold", "20", "--watch", "2", "--interval", "0.2")
    assert done.returncode == 0, done.stderr
    docs = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(docs) == 2
    d = docs[-1]
    assert (d["group"], d["topic"], d["members"], d["state"]) == (group, frames, 0, "empty")
    by_part = {r["partition"]: r for r in d["partitions"]}
    assert [by_part[i]["committed"] for i in range(4)] == [10, -1, -1, -1]
    assert [by_part[i]["end"] for i in range(4)] == [25] * 4
    assert d["lag"] == 90
    # earliest: 15 + 3 x 25 = 90; KEDA's cap compares 90 // 20 = 4 with 4 partitions: not
    # above, so 90 passes and asks for ceil(90 / 20) = 5 workers on 4 partitions
    assert (d["metric"], d["active"], d["desired"]) == (90, True, 5)

    latest = json.loads(evi_lag(*flags, "--json", "--lag-threshold", "20",
                                "--offset-reset-policy", "latest").stdout)
    assert (latest["metric"], latest["desired"]) == (15 + 3, 1)  # uncommitted count 1 each

    table = evi_lag(*flags, "--lag-threshold", "20", "--max-replicas", "3")
    head, row = table.stdout.splitlines()
    assert head.split() == ["kind", "group", "parts", "lag", "metric", "active", "members",
                            "state", "desired"]
    assert row.split() == ["face", group, "4", "90", "90", "yes", "0", "empty", "3"]

    missing = evi_lag(*flags, "--kind", "person")
    assert missing.returncode == 1 and "does not exist" in missing.stderr
