"""Workers that die or stop mid-stream: SIGKILL loses nothing, SIGTERM drains (no duplicates
beyond the batch in flight), an unexpected error exits 70 and its batch is replayed."""

from __future__ import annotations

import signal
import threading

import pytest

from evi.settings import KafkaSettings
from evi.topics import Topics
from processors.settings import ProcessorSettings
from tests.helpers import free_port, log_tail, wait_until
from tests.processors.kafka.util import (
    Sent,
    duplicates,
    in_order,
    processor,
    produce,
    results,
    status,
    wait_results,
)

pytestmark = pytest.mark.kafka

STREAMS = [f"cam{i}" for i in range(8)]
FRAMES = 40
BATCH = ProcessorSettings().batch_max  # what a drain may at most repeat
ALL = {(s, q) for s in STREAMS for q in range(FRAMES)}


def paced(kafka: KafkaSettings, topics: Topics, fps: float) -> threading.Thread:
    """8 streams at `fps` each, in the background (FRAMES / fps seconds)."""
    out: list[Sent] = []
    t = threading.Thread(target=lambda: out.extend(
        produce(kafka, topics.frames("face"), STREAMS, range(FRAMES), partitions=4, fps=fps)))
    t.start()
    return t


def count(kafka: KafkaSettings, topics: Topics) -> int:
    return len(results(kafka, topics.results("face")))


def test_sigkill_mid_run_loses_nothing(kafka: KafkaSettings, topics: Topics) -> None:
    ports = free_port(), free_port()
    with (
        processor("kill-a", kafka, topics, ports[0]) as a,
        processor("kill-b", kafka, topics, ports[1]),
    ):
        wait_until(lambda: all(status(p, "/readyz") == 200 for p in ports), 60, "both ready",
                   step=0.5)  # fmt: skip
        feeder = paced(kafka, topics, fps=8)  # ~5 s of frames
        wait_until(lambda: count(kafka, topics) >= len(ALL) // 4, 60, "a quarter done", step=0.3)
        a.kill()  # SIGKILL: no drain, no commit, no LeaveGroup
        assert a.wait(10) == -signal.SIGKILL
        feeder.join(30)
        # b takes a's partitions once the session times out (10 s) and replays what a had not
        # committed.
        got = wait_results(kafka, topics, ALL, 120, logs=("kill-a", "kill-b"))
    dups = duplicates(got)
    print(f"SIGKILL: {len(got)} results for {len(ALL)} frames, {dups} duplicates")
    assert {(r.stream, r.seq) for r in got} == ALL
    assert in_order(got)


def test_sigterm_drains_then_successor_resumes(kafka: KafkaSettings, topics: Topics) -> None:
    port = free_port()
    with processor("term-a", kafka, topics, port) as a:
        wait_until(lambda: status(port, "/readyz") == 200, 60, "ready", step=0.5)
        feeder = paced(kafka, topics, fps=8)
        wait_until(lambda: count(kafka, topics) >= len(ALL) // 4, 60, "a quarter done", step=0.3)
        a.send_signal(signal.SIGTERM)
        assert a.wait(40) == 0, log_tail("term-a")
        before = count(kafka, topics)
        feeder.join(30)
    assert before < len(ALL), "stopped mid-stream"
    with processor("term-b", kafka, topics, free_port()):
        got = wait_results(kafka, topics, ALL, 90, logs=("term-a", "term-b"))
    dups = duplicates(got)
    print(f"SIGTERM: {before} results before the stop, {dups} duplicates after the restart")
    assert {(r.stream, r.seq) for r in got} == ALL
    assert dups <= BATCH, f"{dups} duplicates: more than the batch in flight"
    assert in_order(got)


def test_unexpected_error_exits_70_and_its_batch_is_replayed(
    kafka: KafkaSettings, topics: Topics
) -> None:
    produce(kafka, topics.frames("face"), STREAMS, range(FRAMES), partitions=4)
    fault = {"EVI_TEST_FAULT": "crash", "EVI_TEST_FAULT_AFTER": "48"}
    with processor("crash-a", kafka, topics, free_port(), env=fault, faulty=True) as a:
        assert a.wait(90) == 70, log_tail("crash-a")
    assert "fatal: batch at tp=" in log_tail("crash-a", 200)
    done_by_a = count(kafka, topics)
    assert 48 <= done_by_a < len(ALL)
    with processor("crash-b", kafka, topics, free_port()):
        got = wait_results(kafka, topics, ALL, 90, logs=("crash-a", "crash-b"))
    dups = duplicates(got)
    print(f"crash: {done_by_a} results before exit 70, {dups} duplicates after the restart")
    assert {(r.stream, r.seq) for r in got} == ALL
    # a committed every delivered batch on its way out: the replay starts at the failed one.
    assert dups == 0
    assert in_order(got)
