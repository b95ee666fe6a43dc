"""CPU of `evi dev --streams 12`'s sample producers: one process per stream (what `evi dev` ran
before) against one process for every stream (what it runs now), alternating in the same run.

    python bench/dev_producers.py [--streams 12] [--fps 30] [--window 60] [--rounds 2]

Each run gets a fresh topic prefix and starts the layout's `evi produce` command lines exactly as
`evi dev --streams N --fps F` does (sample streams, --loop, kind face); after the first frames
and --warmup seconds more, the CPU seconds (utime + stime from /proc) of the producer processes
and of the broker JVM are read over --window seconds, and the frames delivered over the same
window from the frames topic's end offsets. No processor runs: they would read the same frames
either way, and their CPU would only add noise. Prints one row per run and medians per layout.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

from confluent_kafka import Consumer, KafkaException

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python bench/dev_producers.py`

from bench.broker import broker_pid
from evi.kafka import admin, ensure_topics, watermarks
from evi.settings import REPO_ROOT, KafkaSettings, TopicSettings
from evi.topics import Topics

KAFKA = KafkaSettings(bootstrap_servers=os.environ.get("EVI_KAFKA__BOOTSTRAP_SERVERS",
                                                       "127.0.0.1:9092"))
HZ = os.sysconf("SC_CLK_TCK")
LOGS = REPO_ROOT / "test-artifacts" / "bench-dev-producers"


def cpu_s(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / HZ


def commands(layout: str, streams: int, fps: float, prefix: str) -> list[list[str]]:
    tail = ["--kind=face", "--fps", str(fps), "--loop", "--bootstrap-servers",
            KAFKA.bootstrap_servers, "--topic-prefix", prefix]
    ids = [f"sample-{i + 1}" for i in range(streams)]
    if layout == "per-stream":
        return [["produce", "--source", "sample:", "--stream", s, *tail] for s in ids]
    return [["produce", *[f for s in ids for f in ("--source", "sample:", "--stream", s)], *tail]]


def delivered(c: Consumer, topic: str, partitions: int) -> int:
    for _ in range(50):  # a topic created a moment ago may have no leader yet
        try:
            return sum(high for _, high in watermarks(c, topic, list(range(partitions))).values())
        except KafkaException:
            time.sleep(0.2)
    raise TimeoutError(f"no leaders for {topic} in 10 s")


def one_run(layout: str, a: argparse.Namespace) -> dict[str, float]:
    topics = Topics(TopicSettings(prefix=f"bdp{uuid.uuid4().hex[:8]}"))
    ensure_topics(KAFKA, topics.specs(["face"]))
    topic, parts = topics.frames("face"), topics.settings.frame_partitions
    LOGS.mkdir(parents=True, exist_ok=True)
    procs = []
    for i, args in enumerate(commands(layout, a.streams, a.fps, topics.prefix)):
        log = open(LOGS / f"{layout}-{i}.log", "wb")  # noqa: SIM115 - the child owns it
        procs.append(subprocess.Popen([sys.executable, "-m", "evi.cli", *args], cwd=REPO_ROOT,
                                      stdout=log, stderr=subprocess.STDOUT))
    c = Consumer(KAFKA.client_config() | {"group.id": f"bdp-{uuid.uuid4().hex[:8]}"})
    broker = broker_pid()
    try:
        for _ in range(300):  # start-up (12 Pythons take a while on 2 cores): first frames, <= 90 s
            if delivered(c, topic, parts) > 0:
                break
            time.sleep(0.3)
        time.sleep(a.warmup)
        n0, b0, p0 = delivered(c, topic, parts), cpu_s(broker), sum(cpu_s(p.pid) for p in procs)
        t0 = time.monotonic()
        time.sleep(a.window)
        n1, b1, p1 = delivered(c, topic, parts), cpu_s(broker), sum(cpu_s(p.pid) for p in procs)
        span = time.monotonic() - t0
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
        c.close()
        admin(KAFKA).delete_topics([s.name for s in topics.specs(["face"])])
    fps = (n1 - n0) / span
    return {"processes": len(procs), "producer_cores": (p1 - p0) / span,
            "broker_cores": (b1 - b0) / span, "fps": fps,
            "producer_ms_per_frame": 1000 * (p1 - p0) / max(n1 - n0, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--streams", type=int, default=12)
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--window", type=float, default=60.0)
    ap.add_argument("--warmup", type=float, default=10.0)
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    if not 1 <= a.rounds <= 10 or not 5 <= a.window <= 600 or not 1 <= a.streams <= 64:
        ap.error("want 1 <= --rounds <= 10, 5 <= --window <= 600, 1 <= --streams <= 64")
    rows: dict[str, list[dict[str, float]]] = {"per-stream": [], "one-process": []}
    print(f"{'layout':12} {'procs':>5} {'producer cores':>14} {'broker cores':>12} "
          f"{'frames/s':>8} {'ms/frame':>8}  load", flush=True)
    for _ in range(a.rounds):
        for layout, got in rows.items():
            r = one_run(layout, a)
            got.append(r)
            load = os.getloadavg()[0]
            print(f"{layout:12} {r['processes']:5.0f} {r['producer_cores']:14.2f} "
                  f"{r['broker_cores']:12.2f} {r['fps']:8.1f} "
                  f"{r['producer_ms_per_frame']:8.2f}  {load:.2f}", flush=True)
    for layout, got in rows.items():
        med = {k: statistics.median(r[k] for r in got) for k in got[0]}
        print(f"median {layout}: producer {med['producer_cores']:.2f} cores, broker "
              f"{med['broker_cores']:.2f} cores, {med['fps']:.1f} frames/s, "
              f"{med['producer_ms_per_frame']:.2f} producer CPU-ms/frame", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
