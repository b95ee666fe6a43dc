"""A 3-node KRaft cluster loses, to SIGKILL, the broker that leads the most frame partitions
while the whole pipeline runs: producers (one in the test, one `evi produce`), two `evi process`
workers and the gateway. No evi process exits, and every (stream, seq) on the frames topic gets
its result (duplicates counted, not failed); the node is started again later. The numbers go to
test-artifacts/broker-kill.json (docs/reliability.md).

Topics are RF 3 / min.insync.replicas 2 through the settings' env (EVI_TOPICS__…), so the
in-flight topic the workers create at assignment is too; every client is given all three nodes.
The cluster is private (tests/private_broker.py `private_cluster`); the shared broker on
127.0.0.1:9092 is never touched.
"""

from __future__ import annotations

import signal
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from pathlib import Path

import pytest

from evi.kafka import ensure_topics
from evi.settings import TopicSettings
from evi.topics import Topics
from evi.wire import parse_frame
from tests.faults.util import Feed, ResultsWatcher, RssSampler, write_artifact
from tests.gateway.gw import gateway
from tests.helpers import (
    common,
    consume_all,
    evi_process,
    free_port,
    header_pairs,
    log_tail,
    wait_until,
)
from tests.private_broker import private_cluster
from tests.processors.kafka.util import processor, status

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(300)]

STREAMS = [f"cam{i}" for i in range(6)]
FPS = 4.0  # per stream, in the test's producer
PARTITIONS = 6
KILLED_S = 25.0  # the node stays dead this long before it is started again
REPLICATION = {"EVI_TOPICS__REPLICATION_FACTOR": "3", "EVI_TOPICS__MIN_INSYNC_REPLICAS": "2"}


def readyz(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)
    except OSError:
        return 0


def exited(pid: int) -> bool:
    """Whether our child `pid` has ended (a zombie until its Popen reaps it, or gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in "ZX"
    except OSError:
        return True


class Exits:
    """When each evi process was first seen ended: noted as the run goes on, asserted at the end,
    so that the numbers of a run where one died are still written."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = dict(pids)
        self.seen: dict[str, float] = {}

    def check(self, t0: float) -> None:
        for what, pid in self.pids.items():
            if what not in self.seen and exited(pid):
                self.seen[what] = round(time.monotonic() - t0, 1)


def test_pipeline_rides_out_a_sigkilled_leader(tmp_path: Path) -> None:
    t_test = time.monotonic()
    with private_cluster(tmp_path / "cache", size=3) as cluster:
        kafka = cluster.kafka
        assert len(kafka.bootstrap_servers.split(",")) == 3
        settings = TopicSettings(prefix=f"bk{uuid.uuid4().hex[:8]}", frame_partitions=PARTITIONS,
                                 replication_factor=3, min_insync_replicas=2)
        topics = Topics(settings)
        ensure_topics(kafka, topics.specs(["face"]))
        frames_topic = topics.frames("face")
        wait_until(lambda: all(len(s.isr) == 3 and s.leader > 0
                               for s in cluster.partitions(frames_topic).values()), 30,
                   "frame partitions with a leader and 3 in-sync replicas")
        watcher = ResultsWatcher(kafka, topics.results("face"))
        watcher.start()
        feed = Feed(kafka, frames_topic, STREAMS, FPS, PARTITIONS)
        ports = [free_port(), free_port()]
        produce = ["produce", "--source", "sample:640x480", "--stream", "live0", "--loop",
                   "--fps", "5", *common(kafka, topics.prefix)]
        logs = {"processor-a": "kill-proc-a", "processor-b": "kill-proc-b",
                "producer": "kill-producer", "gateway": "kill-gateway"}
        with (processor(logs["processor-a"], kafka, topics, ports[0], env=REPLICATION) as a,
              processor(logs["processor-b"], kafka, topics, ports[1], env=REPLICATION) as b,
              gateway(kafka, topics, logs["gateway"]) as gw,
              evi_process(logs["producer"], *produce, env=REPLICATION) as prod):
            pids = {"processor-a": a.pid, "processor-b": b.pid, "producer": prod.pid,
                    "gateway": gw.pid}
            exits = Exits(pids)
            sampler = RssSampler(list(pids.values()), every=0.5)
            sampler.start()
            feed.start()
            try:
                wait_until(lambda: all(status(p, "/readyz") == 200 for p in ports), 60,
                           "both workers assigned")
                wait_until(lambda: len(watcher.seen()) >= 60, 60, "results flowing")
                time.sleep(2.0)
                exits.check(t_test)
                assert not exits.seen, exits.seen
                leaders = cluster.leader_counts(frames_topic)
                victim = max(leaders, key=lambda n: leaders[n])
                victim_parts = {p for p, s in cluster.partitions(frames_topic).items()
                                if s.leader == victim}
                victim_streams = {s for i, s in enumerate(STREAMS)
                                  if i % PARTITIONS in victim_parts}
                handed_kill = len(feed.handed)
                t_kill = time.monotonic()
                cluster.kill(victim)
                gw_codes: Counter[int] = Counter()
                while time.monotonic() - t_kill < KILLED_S:
                    exits.check(t_kill)
                    gw_codes[readyz(gw.port)] += 1
                    time.sleep(1.0)
                # The cluster's own failover is tests/kafka_cluster's to assert; here it is noted
                # (a broker's metadata may still name the dead leader when asked).
                failover = {p: s.leader for p, s in cluster.partitions(frames_topic).items()}

                t_restart = time.monotonic()
                cluster.start()  # only the killed node is down: kafka.sh starts it and waits
                t_back = time.monotonic()
                wait_until(lambda: all(victim in s.isr
                                       for s in cluster.partitions(frames_topic).values()), 60,
                           f"node {victim} back in every ISR")
                time.sleep(3.0)
                exits.check(t_kill)
                assert feed.finish(60) == 0 and not feed.failed, feed.failed[:3]
                exits.pids.pop("producer")  # stopped on purpose from here on
                prod.send_signal(signal.SIGTERM)
                prod.wait(30)
                produced = set()
                for m in consume_all(kafka, frames_topic, 30, require_all=True):
                    meta = parse_frame(m.key(), m.value(), header_pairs(m), 10 << 20)
                    produced.add((meta.stream, meta.seq))
                assert set(feed.delivered) <= produced
                wait_until(lambda: produced <= watcher.seen() or exited(a.pid) or exited(b.pid),
                           90, "a result for every frame")
                t_all = time.monotonic()
                exits.check(t_kill)
                gw_streams = ({s["stream"]: s for s in gw.get("/api/streams")}
                              if "gateway" not in exits.seen else {})
            finally:
                feed.done.set()
                sampler.stop()
                watcher.stop()
            codes = {"producer": prod.returncode}
            for what, proc in (("processor-a", a), ("processor-b", b)):
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                codes[what] = proc.wait(60)
        inflight = cluster.partitions(topics.inflight(topics.group("face")))

    missing = sorted(produced - watcher.seen())
    later = set(feed.handed[handed_kill:])
    on_victims = [x.at for x in watcher.arrivals if x.at > t_kill and x.stream in victim_streams
                  and (x.stream, x.seq) in later]
    arrivals = sorted(x.at for x in watcher.arrivals if t_kill <= x.at <= t_restart)
    gap = max((q - p for p, q in zip([t_kill, *arrivals], arrivals, strict=False)), default=0.0)
    numbers = {
        "fault": f"SIGKILL of the broker leading the most frame partitions ({leaders[victim]} of "
                 f"{PARTITIONS}), 3-node KRaft, RF 3 / min.insync 2, started again after "
                 f"{KILLED_S:.0f} s",
        "victim_node": victim, "victim_frame_partitions": sorted(victim_parts),
        "frame_partition_leaders_before_restart": failover,
        "frames": len(produced), "results": len(watcher.arrivals),
        "distinct_results": len(watcher.seen()), "duplicates": watcher.duplicates(),
        "missing": len(missing),
        "s_kill_to_first_result_on_victims_partitions":
            round(min(on_victims) - t_kill, 1) if on_victims else None,
        "longest_gap_between_results_while_down_s": round(gap, 1),
        "node_restart_s": round(t_back - t_restart, 1),
        "s_to_all_results_after_producers_stopped": round(t_all - t_back, 1),
        "exited_s_after_kill": exits.seen,
        "gateway_readyz_while_down": dict(gw_codes),
        "gateway_results_seen": {k: (v.get("stats") or {}).get("results_seen")
                                 for k, v in sorted(gw_streams.items())},
        "exit_codes_after_sigterm": codes,
        "rss_mb_max": {what: round(max(sampler.between(t_kill, t_all, pid), default=0.0), 1)
                       for what, pid in pids.items()},
        "test_s": round(time.monotonic() - t_test, 1),
    }
    path = write_artifact("broker-kill.json", numbers)
    print("\n" + " ".join(f"{k}={v}" for k, v in numbers.items()) + f" -> {path}")

    assert not exits.seen, "\n".join(f"{what} exited {at} s after the kill:\n"
                                      f"{log_tail(logs[what])}"
                                      for what, at in exits.seen.items())
    assert not missing, f"{len(missing)} frames without a result, e.g. {missing[:5]}"
    assert watcher.bad == 0
    assert codes["processor-a"] == 0 and codes["processor-b"] == 0, codes
    assert inflight and all(len(s.replicas) == 3 for s in inflight.values()), inflight
