"""A real broker stopped MID-RUN: `evi produce` stays within a memory bound, counts its drops by
reason, keeps per-stream order, and resumes with the newest frames when the broker is back.

The other outage tests put a TCP forwarder in front of the shared broker and only simulate an
outage at start. Here a private broker (tests/private_broker.py: same jars, own ports and data
under tmp) is stopped with `kafka.sh stop` while frames flow and started again on the same data
dir and ports; the shared broker on 127.0.0.1:9092 is never touched.

The stream is `sample:1920x1080 --loop --fps 15` at quality 95 (~0.5-0.65 MB a frame, ~8 MB/s):
a recorded source paced in real time, so its backpressure policy is drop-oldest
(producers.capture.backpressure_policy), like a camera. The in-flight cap is lowered to 2 MiB
(EVI_PUBLISHER__MAX_INFLIGHT_BYTES) so that the bound, not the outage length, decides memory:
at the default 64 MiB a 5 s outage would fit in flight and nothing would be dropped.
"""

from __future__ import annotations

import re
import signal
import statistics
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from evi.kafka import ensure_topics
from evi.settings import TopicSettings
from evi.topics import Topics
from tests.helpers import LOGS, common, evi_process, free_port, http_ok, log_tail, wait_until
from tests.private_broker import private_broker
from tests.producers.kafka_util import frames, read_topic, statuses

pytestmark = pytest.mark.kafka

STREAM = "cam"
FPS = 15  # the sample clip's own rate: it is paced at min(native, cap)
QUEUE_FRAMES = 4  # the default, set explicitly because the bound below uses it
MAX_INFLIGHT = 2 << 20  # bytes handed to librdkafka and not yet acknowledged
DOWN_S = 5.0  # broker fully stopped (between `kafka.sh stop` returning and `start` called)
RSS_SLACK_MB = 32.0  # allocator arenas / fragmentation (1080p BGR frames are 6 MB), encoder
# scratch, librdkafka reconnect buffers and thread stacks: the noise of a process whose
# working set is bounded, well below what an unbounded queue would add during the outage
MESSAGE_TIMEOUT_S = 30.0  # PublisherSettings.message_timeout_ms default
LOG_NAME = "producer-broker-outage"
SUMMARY = re.compile(r"stream=cam (?:delivered (\d+) of (\d+) frame records \((\d+) frames\); "
                     r"dropped: (.*)|delivered (\d+) frame records \((\d+) frames\))")


def rss_mb(pid: int) -> float:
    """VmRSS of a process in MB (psutil is not a dependency)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3) as r:
        text = r.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


@dataclass
class Counts:
    """The producer's counters for the stream at one scrape."""

    captured: float
    produced: float
    dropped: dict[str, float]
    t: float = field(default_factory=time.monotonic)

    @classmethod
    def of(cls, port: int) -> Counts:
        m = scrape(port)

        def get(name: str, **labels: str) -> float:
            return m.get((name, tuple(sorted({"stream": STREAM, **labels}.items()))), 0.0)

        return cls(
            captured=get("evi_producer_frames_captured_total"),
            produced=get("evi_producer_frames_produced_total", kind="face"),
            dropped={r: get("evi_producer_frames_dropped_total", reason=r)
                     for r in ("fps", "queue_full", "too_large", "delivery_failed", "shutdown")},
        )

    def lost(self) -> float:
        """Frames that got a seq and were dropped (fps drops never get a seq)."""
        return sum(v for r, v in self.dropped.items() if r != "fps")


class RssSampler(threading.Thread):
    """VmRSS of `pid` every 50 ms, until stopped (at most `limit_s`)."""

    def __init__(self, pid: int, limit_s: float = 180.0) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        self.pid, self.limit_s = pid, limit_s
        self.samples: list[tuple[float, float]] = []  # (monotonic, MB)
        self.done = threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + self.limit_s
        for _ in range(int(self.limit_s / 0.05) + 1):
            if self.done.is_set() or time.monotonic() > deadline:
                return
            try:
                self.samples.append((time.monotonic(), rss_mb(self.pid)))
            except (OSError, AssertionError):
                return  # the process is gone
            self.done.wait(0.05)

    def between(self, t0: float, t1: float) -> list[float]:
        return [mb for t, mb in self.samples if t0 <= t <= t1]


def test_broker_stopped_mid_run_bounds_memory_counts_drops_and_resumes(tmp_path: Path) -> None:
    t_test = time.monotonic()
    with private_broker(tmp_path / "cache") as broker:
        kafka = broker.kafka
        topics = Topics(TopicSettings(prefix=f"bo{uuid.uuid4().hex[:8]}"))
        ensure_topics(kafka, topics.specs(["face"]))
        mport = free_port()
        env = {"EVI_PUBLISHER__MAX_INFLIGHT_BYTES": str(MAX_INFLIGHT),
               "EVI_PUBLISHER__QUEUE_FRAMES": str(QUEUE_FRAMES)}
        args = ["produce", "--source", "sample:1920x1080", "--stream", STREAM, "--loop",
                "--fps", str(FPS), "--quality", "95", "--metrics-port", str(mport),
                *common(kafka, topics.prefix), "--log-level", "INFO"]
        with evi_process(LOG_NAME, *args, env=env) as proc:
            sampler = RssSampler(proc.pid)
            try:
                wait_until(lambda: proc.poll() is not None
                           or http_ok(f"http://127.0.0.1:{mport}/metrics"), 30, "/metrics")
                assert proc.poll() is None, log_tail(LOG_NAME)
                sampler.start()
                # ~3 s of frames through the running broker
                wait_until(lambda: Counts.of(mport).produced >= 3 * FPS, 60, "frames flowing")
                time.sleep(1.0)
                before = Counts.of(mport)

                t_stop0 = time.monotonic()
                broker.stop()
                t_down, wall_down = time.monotonic(), time.time()
                down = [Counts.of(mport)]
                for _ in range(int(DOWN_S / 0.5)):  # the broker is gone: nothing is acked
                    time.sleep(0.5)
                    down.append(Counts.of(mport))
                    assert proc.poll() is None, log_tail(LOG_NAME)
                t_start0, wall_start0 = time.monotonic(), time.time()
                broker.start()  # same data dir, same ports
                t_up, wall_up = time.monotonic(), time.time()
                at_up = Counts.of(mport)
                wait_until(lambda: Counts.of(mport).produced >= at_up.produced + 3 * FPS, 60,
                           "frames delivered again after the restart")
                t_resumed = time.monotonic()
                time.sleep(1.0)
                last = Counts.of(mport)
            finally:
                sampler.done.set()
                sampler.join(5)
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(60)
            t_exit = time.monotonic()

        log_text = (LOGS / f"{LOG_NAME}.log").read_text(errors="replace")
        records = read_topic(kafka, topics.frames("face"))
        by_stream = frames(records)
        reg = statuses(kafka, topics.streams)

    # --- memory: bounded while the broker is away ------------------------------------------
    frame_sizes = [len(r.value) for r in records]
    max_frame_mb = max(frame_sizes) / 2**20
    baseline = max(sampler.between(t_stop0 - 1.0, t_stop0))  # warm: flowing, nothing queued
    outage_rss = sampler.between(t_stop0, t_resumed)
    assert baseline > 0 and len(outage_rss) > 50, (baseline, len(outage_rss))
    # what the publisher holds: its queue, and the in-flight bytes twice (the Python bytes in
    # the Pending kept for the delivery callback, and librdkafka's copy) plus the one frame the
    # cap lets through over the limit
    held_mb = QUEUE_FRAMES * max_frame_mb + 2 * (MAX_INFLIGHT / 2**20 + max_frame_mb)
    bound = baseline + held_mb + RSS_SLACK_MB
    peak = max(outage_rss)
    # the outage must be long enough that keeping every frame would have broken the bound
    captured_down = at_up.captured - before.captured
    unbounded_mb = captured_down * statistics.median(frame_sizes) / 2**20
    assert unbounded_mb > held_mb + RSS_SLACK_MB, (captured_down, unbounded_mb)
    assert peak <= bound, (f"RSS {peak:.0f} MB over {bound:.0f} MB (baseline {baseline:.0f})",
                           [round(x) for x in outage_rss[::20]])

    # --- drops: counted by reason during the outage, none while the broker was up ------------
    assert before.lost() == 0, before.dropped
    assert down[-1].produced == down[0].produced, "acked while the broker was stopped"
    queue_full = [c.dropped["queue_full"] for c in down]
    grew = queue_full[-1] - queue_full[0]
    assert queue_full == sorted(queue_full) and grew >= 2 * FPS, queue_full
    assert down[-1].captured - down[0].captured >= (DOWN_S - 1) * FPS  # capture never stalled
    if t_up - t_stop0 < MESSAGE_TIMEOUT_S - 5:  # in flight frames wait out a short outage
        assert last.dropped["delivery_failed"] == 0, last.dropped
    assert last.dropped["too_large"] == 0
    # every frame that got a seq is acked, dropped (counted) or still pending; pending is
    # bounded by the queue and the in-flight cap (+2 for a capture between two counters)
    pending = (last.captured - last.dropped["fps"]) - last.produced - last.lost()
    in_flight_frames = MAX_INFLIGHT // min(frame_sizes) + 1
    assert 0 <= pending <= QUEUE_FRAMES + in_flight_frames + 2, (pending, last)

    # --- resumed, in order, gaps only where drops were counted -------------------------------
    metas = by_stream[STREAM]
    seqs = [m.seq for m in metas]
    assert seqs == sorted(set(seqs)), "reordered or duplicated frames"
    assert len({r.partition for r in records}) == 1
    after = [m for m in metas if m.ts_ms / 1000 > wall_up]
    assert len(after) >= 3 * FPS, len(after)
    assert min(m.seq for m in after) > max(m.seq for m in metas if m.ts_ms / 1000 < wall_down)
    # drop-oldest stays current: of the frames captured while the broker was stopped only the
    # newest (queued, or in flight) are delivered
    kept_down = [m for m in metas if wall_down <= m.ts_ms / 1000 <= wall_start0]
    assert len(kept_down) <= QUEUE_FRAMES + in_flight_frames, len(kept_down)
    # the exit summary holds the final counts (after the SIGTERM flush)
    summary = SUMMARY.search(log_text)
    assert summary and summary.group(1), log_text[-3000:]
    acked, _records, submitted, drop_text = summary.group(1, 2, 3, 4)
    dropped = {k: int(v) for k, v in (kv.split("=") for kv in drop_text.split(", "))}
    assert dropped.get("queue_full", 0) >= queue_full[-1]
    assert int(acked) == len(seqs), (acked, len(seqs))
    assert int(acked) + sum(dropped.values()) == int(submitted), (acked, dropped, submitted)
    missing = set(range(max(seqs) + 1)) - set(seqs)
    assert len(missing) <= sum(dropped.values()), (len(missing), dropped)

    # --- registry and exit -------------------------------------------------------------------
    history = [i.status for i in reg[STREAM]]
    assert history[0] == "live" and history[-1] == "ended", history
    latest = reg[STREAM][-1]
    assert (latest.width, latest.height, latest.kinds) == (1920, 1080, ["face"])
    assert code == 1, f"run() returns 1 when frames were dropped; got {code}"  # not 0: drops
    assert "SIGTERM: flushing and stopping" in log_text

    print(f"\nbroker stop {t_down - t_stop0:.1f}s, down {t_start0 - t_down:.1f}s, start "
          f"{t_up - t_start0:.1f}s, {3 * FPS} acks after start {t_resumed - t_up:.1f}s; "
          f"RSS baseline {baseline:.0f} MB peak {peak:.0f} MB bound {bound:.0f} MB "
          f"(mean {statistics.fmean(outage_rss):.0f}); unbounded would add {unbounded_mb:.0f} MB; "
          f"drops during outage queue_full={queue_full[-1] - queue_full[0]:.0f}; final "
          f"{dropped}, acked {acked} of {submitted}; frames {min(frame_sizes) >> 10}-"
          f"{max(frame_sizes) >> 10} KB; kept while down {len(kept_down)}; exit {code} after "
          f"{t_exit - t_resumed:.1f}s; test {time.monotonic() - t_test:.1f}s")
