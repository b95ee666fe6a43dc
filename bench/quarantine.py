"""What quarantine's in-flight records cost a worker: throughput on a backlog and latency at a
live rate, with them (the default) and without (`EVI_QUARANTINE_DEATHS=0`), in one run.

    python bench/quarantine.py [--frames 1200] [--rounds 3] [--streams 8] [--fps 15]

Backlog: N frames of 640x480 preloaded, a fresh worker and group each round (bench/processor.py's
(c)); frames/s between the 5th and 95th percentile of the results' timestamps. Live: `--streams`
streams at `--fps` for 10 s into a worker that is already running; capture (`evi-ts`) to the
result's broker timestamp, p50 and p99. On and off alternate each round, so both see the same
background load; medians and the on/off ratio are printed. Bounded: about rounds × 2 × (N / 200
+ 35 s); topics are deleted afterwards.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from statistics import median

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python bench/quarantine.py`

from bench.model import table
from bench.processor import PARTITIONS, _preload, fresh_topics, jpegs, real_worker
from evi.kafka import watermarks
from evi.settings import REPO_ROOT, KafkaSettings
from evi.topics import Topics
from evi.wire import FrameMeta, decode_result, frame_headers

OFF = {"EVI_QUARANTINE_DEATHS": "0"}


def live_latency(kafka: KafkaSettings, env: dict[str, str], streams: int, fps: float,
                 seconds: float = 10.0) -> tuple[float, float]:  # fmt: skip
    """p50 and p99 capture → result (ms) of a live feed into a running worker."""
    topics = fresh_topics(kafka)
    frames = jpegs(640, 480)
    results = topics.results("face")
    c = Consumer(kafka.client_config() | {"group.id": f"bench-{uuid.uuid4().hex[:8]}",
                                          "enable.auto.commit": False})  # fmt: skip
    for _ in range(50):  # a topic created a moment ago may have no leader yet
        try:
            marks = watermarks(c, results, list(range(PARTITIONS)))
            break
        except KafkaException:
            time.sleep(0.2)
    start = {p: high for p, (_, high) in marks.items()}
    c.assign([TopicPartition(results, p, off) for p, off in start.items()])
    cmd = [sys.executable, "-m", "evi.cli", "process", "--kind", "face", "--web-port", "0",
           "--topic-prefix", topics.prefix, "--log-level", "WARNING"]
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.DEVNULL,
                            env={**os.environ, **env})  # fmt: skip
    p = Producer(kafka.client_config() | {"linger.ms": 0})
    try:
        _preload(kafka, topics.frames("face"), frames, PARTITIONS)  # warm-up: one per partition
        got = 0
        deadline = time.monotonic() + 90
        while got < PARTITIONS and time.monotonic() < deadline:
            got += sum(1 for m in c.consume(100, 0.2) if m.error() is None)
        lat: list[float] = []
        n = int(seconds * fps) * streams
        feeder = threading.Thread(target=_feed, args=(p, topics, frames, streams, fps, seconds))
        feeder.start()
        deadline = time.monotonic() + seconds + 30
        while len(lat) < n and time.monotonic() < deadline:
            for m in c.consume(200, 0.1):
                if m.error() is None:
                    r = decode_result(m.value())
                    lat.append(m.timestamp()[1] - r.ts_ms)
        feeder.join()
        lat.sort()
        return lat[len(lat) // 2], lat[int(len(lat) * 0.99)]
    finally:
        proc.terminate()
        proc.wait(40)
        c.close()
        _drop(kafka, topics)


def _feed(p: Producer, topics: Topics, frames: list[bytes], streams: int, fps: float,
          seconds: float) -> None:  # fmt: skip
    t0 = time.monotonic()
    for seq in range(int(seconds * fps)):
        for i in range(streams):
            meta = FrameMeta(f"live{i}", seq, int(time.time() * 1000), 640, 480, "bench")
            p.produce(topics.frames("face"), frames[seq % 10], meta.stream.encode(),
                      partition=i % PARTITIONS, headers=list(frame_headers(meta)))  # fmt: skip
        p.poll(0)
        time.sleep(max(0.0, t0 + (seq + 1) / fps - time.monotonic()))
    p.flush(30)


def _drop(kafka: KafkaSettings, topics: Topics) -> None:
    names = [n for n in AdminClient(kafka.client_config()).list_topics(timeout=10).topics
             if n.startswith(f"{topics.prefix}.")]  # fmt: skip
    if names:
        AdminClient(kafka.client_config()).delete_topics(names, operation_timeout=30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=1200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--streams", type=int, default=8)
    ap.add_argument("--fps", type=float, default=15.0)
    ap.add_argument("--bootstrap-servers", default="127.0.0.1:9092")
    a = ap.parse_args()
    kafka = KafkaSettings(bootstrap_servers=a.bootstrap_servers)
    load = os.getloadavg()
    print(f"# bench/quarantine.py — {os.cpu_count()} CPUs, load {load[0]:.1f} {load[1]:.1f} "
          f"{load[2]:.1f}, {a.frames} frames backlog, {a.streams} × {a.fps:g} fps live")
    on_fps, off_fps, ratios, on_lat, off_lat = [], [], [], [], []
    frames = jpegs(640, 480)
    for r in range(a.rounds):
        topics = fresh_topics(kafka)
        try:
            _preload(kafka, topics.frames("face"), frames, a.frames)
            pair: list[tuple[bool, float]] = []
            for env in ({}, OFF) if r % 2 == 0 else (OFF, {}):
                fps = real_worker(kafka, topics, a.frames, f"{topics.prefix}-{len(pair)}", None,
                                  0, os.getpid(), env)[0]  # fmt: skip
                pair.append((env == OFF, fps))
            on = next(f for off, f in pair if not off)
            off = next(f for off, f in pair if off)
            on_fps.append(on)
            off_fps.append(off)
            ratios.append(on / off)
        finally:
            _drop(kafka, topics)
        on_lat.append(live_latency(kafka, {}, a.streams, a.fps))
        off_lat.append(live_latency(kafka, OFF, a.streams, a.fps))
    table(f"Backlog, 640x480, frames/s (medians of {a.rounds})",
          ["quarantine on", "off", "on/off (per round)"],
          [[f"{median(on_fps):.0f}", f"{median(off_fps):.0f}",
            f"{median(ratios):.1%} ({' '.join(f'{x:.0%}' for x in ratios)})"]])  # fmt: skip
    table(f"Live, {a.streams} streams × {a.fps:g} fps, capture → result ms (medians of {a.rounds})",
          ["", "p50", "p99"],
          [["quarantine on", f"{median(x[0] for x in on_lat):.0f}",
            f"{median(x[1] for x in on_lat):.0f}"],
           ["off", f"{median(x[0] for x in off_lat):.0f}",
            f"{median(x[1] for x in off_lat):.0f}"]])  # fmt: skip


if __name__ == "__main__":
    main()
