"""Two workers in one consumer group split the frames topic's partitions and, together, produce
one result for every frame of 8 streams, each stream's results in order."""

from __future__ import annotations

import pytest

from evi.settings import KafkaSettings
from evi.topics import Topics
from tests.helpers import free_port, log_tail, wait_until
from tests.processors.kafka.util import (
    assignment,
    duplicates,
    in_order,
    processor,
    produce,
    scrape,
    status,
    wait_results,
)

pytestmark = pytest.mark.kafka

STREAMS = [f"cam{i}" for i in range(8)]
FRAMES = 25


def test_two_workers_split_partitions_and_cover_every_frame(
    kafka: KafkaSettings, topics: Topics
) -> None:
    ports = free_port(), free_port()
    group = topics.group("face")
    with (
        processor("group-a", kafka, topics, ports[0]),
        processor("group-b", kafka, topics, ports[1]),
    ):
        # Ready = partitions assigned; both ready means the group settled with two members.
        wait_until(lambda: all(status(p, "/readyz") == 200 for p in ports), 60, "both ready",
                   step=0.5)  # fmt: skip
        members = assignment(kafka, group)
        assert len(members) == 2 and all(members), members
        assert members[0].isdisjoint(members[1]) and members[0] | members[1] == {0, 1, 2, 3}

        produce(kafka, topics.frames("face"), STREAMS, range(FRAMES), partitions=4)
        want = {(s, q) for s in STREAMS for q in range(FRAMES)}
        got = wait_results(kafka, topics, want, 90, logs=("group-a", "group-b"))

        assert len(got) == len(want) and duplicates(got) == 0
        assert in_order(got)
        assert {(r.kind, r.model) for r in got} == {("face", "blazeface-short")}
        # Frames i % 10 == 9 of the sample clip show no face; the others one.
        assert all(bool(r.detections) == (r.seq % 10 != 9) for r in got)
        per_worker = []
        for port in ports:
            m = scrape(port)
            per_worker.append(
                m[("evi_processor_frames_total", (("kind", "face"), ("model", "blazeface-short")))]
            )
        # Each worker served the streams of its own partitions (stream i lives on i % 4).
        assert all(n > 0 for n in per_worker), (per_worker, log_tail("group-a"))
        assert sum(per_worker) == len(want)
