"""The one broker of a pipeline stopped for 60 s mid-run and started again: the processor rides
it out (never exits, memory bounded) and resumes, and every (stream, seq) produced gets its
result. The numbers go to test-artifacts/outage-60s.json (docs/reliability.md).

A private broker (tests/private_broker.py: same jars, own ports and data under tmp) is stopped
with `kafka.sh stop`; the shared broker on 127.0.0.1:9092 is never touched. Frames come from a
confluent-kafka producer in the test that keeps every frame while the broker is away (as
`evi produce` does up to its in-flight bound, docs/producers.md), so every seq is delivered in
the end and must have a result. One `evi process` worker with its default
`broker_outage_s` (300 s): a 60 s outage is well inside it.
"""

from __future__ import annotations

import signal
import time
import uuid
from pathlib import Path

import pytest

from evi.kafka import ensure_topics
from evi.settings import TopicSettings
from evi.topics import Topics
from tests.faults.util import Feed, ResultsWatcher, RssSampler, write_artifact
from tests.helpers import LOGS, free_port, log_tail, wait_until
from tests.private_broker import private_broker
from tests.processors.kafka.util import processor

pytestmark = pytest.mark.kafka

STREAMS = [f"cam{i}" for i in range(4)]
FPS = 5.0  # per stream: 20 frames/s in all, a live rate the worker keeps up with easily
PARTITIONS = 4
DOWN_S = 60.0  # the broker is fully stopped this long
AFTER_S = 10.0  # frames keep coming this long after the broker is back
RSS_GROWTH_MB = 64.0  # allowed over the pre-outage peak while the broker is away
NAME = "outage-processor"


def test_processor_rides_out_a_60s_broker_outage(tmp_path: Path) -> None:
    t_test = time.monotonic()
    with private_broker(tmp_path / "cache") as broker:
        kafka = broker.kafka
        topics = Topics(TopicSettings(prefix=f"out{uuid.uuid4().hex[:8]}",
                                      frame_partitions=PARTITIONS))
        ensure_topics(kafka, topics.specs(["face"]))
        watcher = ResultsWatcher(kafka, topics.results("face"))
        watcher.start()
        feed = Feed(kafka, topics.frames("face"), STREAMS, FPS, PARTITIONS)
        port = free_port()
        with processor(NAME, kafka, topics, port, "--log-level", "INFO") as proc:
            sampler = RssSampler([proc.pid])
            sampler.start()
            feed.start()
            try:
                wait_until(lambda: len(watcher.arrivals) >= 40 or proc.poll() is not None, 90,
                           "results flowing")
                assert proc.poll() is None, log_tail(NAME)
                time.sleep(3.0)
                log_before = (LOGS / f"{NAME}.log").stat().st_size

                t_stop = time.monotonic()
                broker.stop()
                t_down = time.monotonic()
                handed_down = len(feed.handed)
                while time.monotonic() - t_down < DOWN_S:
                    assert proc.poll() is None, f"worker exited mid-outage:\n{log_tail(NAME)}"
                    time.sleep(1.0)
                t_start = time.monotonic()
                broker.start()  # same data dir and ports
                t_up = time.monotonic()
                handed_up = len(feed.handed)
                log_outage = (LOGS / f"{NAME}.log").stat().st_size - log_before

                time.sleep(AFTER_S)
                undelivered = feed.finish(60)
                assert undelivered == 0 and not feed.failed, (undelivered, feed.failed[:3])
                want = set(feed.delivered)
                wait_until(lambda: want <= watcher.seen() or proc.poll() is not None, 90,
                           "a result for every frame")
                assert proc.poll() is None, f"worker exited:\n{log_tail(NAME)}"
                t_all = time.monotonic()
            finally:
                feed.done.set()
                sampler.stop()
                watcher.stop()
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(60)
        log_text = (LOGS / f"{NAME}.log").read_text(errors="replace")

    missing = sorted(want - watcher.seen())
    assert not missing, f"{len(missing)} frames without a result, e.g. {missing[:5]}"
    assert watcher.bad == 0
    assert code == 0, f"exit {code} after SIGTERM:\n{log_text[-3000:]}"
    assert "fatal:" not in log_text

    # memory: nothing new can be fetched while the broker is away, so RSS stays where it was
    before = sampler.between(t_stop - 10.0, t_stop)
    during = sampler.between(t_stop, t_up)
    after = sampler.between(t_up, t_all)
    assert before and len(during) > 100 and after, (len(before), len(during), len(after))
    assert max(during) <= max(before) + RSS_GROWTH_MB, (max(before), max(during))

    in_outage = set(feed.handed[handed_down:handed_up])
    backlog_done = watcher.all_by(set(feed.handed[:handed_up]))
    first = watcher.first_after(t_up)
    assert first is not None and backlog_done is not None
    numbers = {
        "fault": f"single broker stopped {DOWN_S:.0f} s (kafka.sh stop), started again",
        "streams": len(STREAMS), "fps_per_stream": FPS, "partitions": PARTITIONS,
        "frames": len(want), "frames_during_outage": len(in_outage),
        "results": len(watcher.arrivals), "distinct_results": len(watcher.seen()),
        "duplicates": watcher.duplicates(), "missing": len(missing),
        "worker_exit_code_after_sigterm": code,
        "broker_stop_s": round(t_down - t_stop, 1), "broker_down_s": round(t_start - t_down, 1),
        "broker_start_s": round(t_up - t_start, 1),
        "s_from_broker_back_to_first_result": round(first, 1),
        "s_from_broker_back_to_backlog_done": round(backlog_done - t_up, 1),
        "rss_mb_before_max": round(max(before), 1), "rss_mb_outage_max": round(max(during), 1),
        "rss_mb_after_max": round(max(after), 1),
        "worker_log_bytes_during_outage": log_outage,
        "test_s": round(time.monotonic() - t_test, 1),
    }
    path = write_artifact("outage-60s.json", numbers)
    print("\n" + " ".join(f"{k}={v}" for k, v in numbers.items()) + f" -> {path}")


GIVE_UP_S = 10.0  # EVI_BROKER_OUTAGE_S for the next test
DRAIN_S = 5.0  # EVI_DRAIN_TIMEOUT_S: the stop after a fatal error is bounded by this + 10 s


def test_processor_gives_up_after_broker_outage_s_and_a_successor_loses_nothing(
    tmp_path: Path,
) -> None:
    """Past `broker_outage_s` a result still not on the broker is fatal: the worker exits 70
    (bounded: the outage bound, then the drain bound) and its batch is replayed by the next
    worker once the broker is back."""
    t_test = time.monotonic()
    env = {"EVI_BROKER_OUTAGE_S": str(GIVE_UP_S), "EVI_DRAIN_TIMEOUT_S": str(DRAIN_S)}
    with private_broker(tmp_path / "cache") as broker:
        kafka = broker.kafka
        topics = Topics(TopicSettings(prefix=f"gu{uuid.uuid4().hex[:8]}",
                                      frame_partitions=PARTITIONS))
        ensure_topics(kafka, topics.specs(["face"]))
        watcher = ResultsWatcher(kafka, topics.results("face"))
        watcher.start()
        feed = Feed(kafka, topics.frames("face"), STREAMS, FPS, PARTITIONS)
        try:
            with processor(f"{NAME}-gives-up", kafka, topics, free_port(), env=env) as proc:
                feed.start()
                wait_until(lambda: len(watcher.arrivals) >= 40 or proc.poll() is not None, 90,
                           "results flowing")
                assert proc.poll() is None, log_tail(f"{NAME}-gives-up")
                broker.stop()
                t_down = time.monotonic()
                code = proc.wait(GIVE_UP_S + DRAIN_S + 10 + 30)
                exited_s = time.monotonic() - t_down
            first_log = (LOGS / f"{NAME}-gives-up.log").read_text(errors="replace")
            broker.start()
            t_up = time.monotonic()
            with processor(f"{NAME}-successor", kafka, topics, free_port()) as successor:
                time.sleep(3.0)
                assert feed.finish(60) == 0 and not feed.failed, feed.failed[:3]
                want = set(feed.delivered)
                wait_until(lambda: want <= watcher.seen() or successor.poll() is not None, 90,
                           "a result for every frame")
                assert successor.poll() is None, log_tail(f"{NAME}-successor")
        finally:
            feed.done.set()
            watcher.stop()

    assert code == 70, f"exit {code}:\n{first_log[-3000:]}"
    assert "fatal: " in first_log, first_log[-3000:]
    assert exited_s <= GIVE_UP_S + DRAIN_S + 10 + 5, exited_s
    missing = sorted(want - watcher.seen())
    assert not missing, f"{len(missing)} frames without a result, e.g. {missing[:5]}"
    print(f"\nbroker_outage_s={GIVE_UP_S:g}: worker exited {code} {exited_s:.1f} s after the "
          f"broker stopped; successor: {len(want)} frames, {len(watcher.seen())} with results, "
          f"{watcher.duplicates()} duplicates, all {time.monotonic() - t_up:.1f} s after the "
          f"broker was back; test {time.monotonic() - t_test:.1f} s")
