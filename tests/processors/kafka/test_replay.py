"""`--group-id` + `--from`: a new group starts at the frames of a given time, not at the beginning;
model selection and group naming of a second model."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from evi.settings import KafkaSettings
from evi.topics import Topics
from tests.helpers import evi_process, free_port, log_tail, wait_until
from tests.processors.kafka.util import assignment, processor, produce, results, status

pytestmark = pytest.mark.kafka

STREAMS = ["old1", "old2"]


def test_from_starts_a_new_group_at_that_time(kafka: KafkaSettings, topics: Topics) -> None:
    t1 = int(time.time() * 1000) - 10_000
    frames = topics.frames("face")
    # seq s captured (and timestamped) at ts_ms + 100 s: 0..19 a minute earlier, 20..39 from t1 on.
    produce(kafka, frames, STREAMS, range(20), partitions=4, ts_ms=t1 - 60_000)
    produce(kafka, frames, STREAMS, range(20, 40), partitions=4, ts_ms=t1 - 2_000)
    start = datetime.fromtimestamp(t1 / 1000, UTC).isoformat()
    group = f"{topics.prefix}-replay"
    port = free_port()
    with processor("replay", kafka, topics, port, "--group-id", group, "--from", start):
        wait_until(lambda: status(port, "/readyz") == 200, 60, "ready", step=0.5)
        assert assignment(kafka, group) == [{0, 1, 2, 3}]
        wait_until(lambda: len(results(kafka, topics.results("face"))) >= 40, 60,
                   "the frames from t1 on")  # fmt: skip
        time.sleep(1.0)  # nothing older follows
        got = results(kafka, topics.results("face"))
    assert sorted((r.stream, r.seq) for r in got) == sorted(
        (s, q) for s in STREAMS for q in range(20, 40)
    ), log_tail("replay")


def test_a_model_that_is_not_the_kinds_own_is_refused_by_name(
    kafka: KafkaSettings, topics: Topics
) -> None:
    with evi_process("model-unknown", "process", "--kind", "face", "--model", "nope",
                     "--topic-prefix", topics.prefix, "--web-port", "0") as proc:  # fmt: skip
        assert proc.wait(60) == 2
    assert "nope" in log_tail("model-unknown")
