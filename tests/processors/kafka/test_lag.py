"""The worker's lag and seconds-behind gauges against Kafka's own view, on a stuck agent:
frames loaded before the worker starts, the agent stalls after a few batches (fault injection)
while heartbeats and the web server go on. Kafka keeps the partitions assigned to it; /healthz
turns 503, /readyz stays 200."""

from __future__ import annotations

import time

import pytest

from evi.settings import KafkaSettings
from evi.topics import Topics
from tests.helpers import free_port, log_tail, wait_until
from tests.processors.kafka.util import describe, processor, produce, scrape, status

pytestmark = pytest.mark.kafka

STREAMS = [f"cam{i}" for i in range(8)]
BATCH = 16
FACE = (("kind", "face"), ("model", "blazeface-short"))


def test_lag_and_seconds_behind_match_kafka_on_a_stuck_agent(
    kafka: KafkaSettings, topics: Topics
) -> None:
    base = int(time.time() * 1000) - 20_000  # captured 20 s ago, 10 fps: seq s at base + 100 s
    sent = produce(kafka, topics.frames("face"), STREAMS, range(30), partitions=4, ts_ms=base)
    ts_at = {(f.partition, f.offset): f.ts_ms for f in sent}
    env = {"EVI_TEST_FAULT": "stall", "EVI_TEST_FAULT_AFTER": "40", "EVI_STALL_TIMEOUT_S": "3",
           "EVI_LAG_INTERVAL_S": "0.5"}  # fmt: skip
    port = free_port()
    with processor("lag", kafka, topics, port, env=env, faulty=True) as proc:
        wait_until(lambda: status(port, "/healthz") == 503, 60, "liveness to fail", step=0.5)
        assert status(port, "/readyz") == 200, "still assigned: Kafka never noticed"

        kafka_view = describe(kafka, topics.group("face"))
        t0 = time.time()
        m = scrape(port)
        t1 = time.time()
        proc.kill()
    assert sorted(kafka_view) == [0, 1, 2, 3], kafka_view
    total = 0
    last_ts = float("inf")
    for p, (current, end, lag) in kafka_view.items():
        kafka_lag = lag if lag is not None else end  # no commit yet: all of it (KEDA: earliest)
        mine = m[("evi_processor_lag_frames", (*FACE, ("partition", str(p))))]
        assert abs(mine - kafka_lag) <= BATCH, (p, mine, kafka_view, log_tail("lag"))
        total += kafka_lag
        if current and kafka_lag:
            # The oldest unprocessed frame follows the last committed one.
            last_ts = min(last_ts, ts_at[(p, current - 1)] / 1000)
    assert 0 < total <= 8 * 30 - 40
    assert abs(m[("evi_processor_worker_lag_frames", FACE)] - total) <= BATCH
    behind = m[("evi_processor_seconds_behind", FACE)]
    print(f"kafka: {kafka_view} lag {total}; worker: {m[('evi_processor_worker_lag_frames', FACE)]}"
          f" behind {behind:.2f} s (expected {t0 - last_ts:.2f}..{t1 - last_ts:.2f} s)")
    assert t0 - last_ts > 15, "frames were captured 20 s ago or more"
    # The age of the oldest unprocessed frame, computed when scraped: the last committed frame
    # bounds it within one frame interval (100 ms per stream here).
    assert t0 - last_ts - 0.5 <= behind <= t1 - last_ts + 0.5
    assert m[("evi_processor_stalled_seconds", FACE)] >= 3
    assert m[("evi_processor_assigned_partitions", FACE)] == 4
