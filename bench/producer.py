"""Producer throughput: JPEG encode and Kafka publish timed separately, per frame size.

    .venv/bin/python bench/producer.py                 # real broker on 127.0.0.1:9092
    .venv/bin/python bench/producer.py --mock          # librdkafka's in-process mock cluster

Encode: ms per frame (one core) for cv2.imencode and simplejpeg at q80, 4:2:0.
Publish: process CPU per frame for Publisher.submit -> librdkafka -> broker ack (acks=all,
idempotent), with pre-encoded JPEGs, i.e. publishing overhead excluding capture and encode.
Raw: the same records through bare confluent-kafka produce() + a poll thread (the floor).
submit ms: wall time of Publisher.submit on the capture thread (includes waiting for room).
frames/s/core = 1 / (encode + publish CPU per frame).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from evi.kafka import ensure_topics
from evi.settings import KafkaSettings, TopicSettings
from evi.topics import Topics
from evi.wire import FrameMeta, frame_headers
from producers.encode import Backend, Encoder
from producers.metrics import ProducerMetrics
from producers.publisher import Pending, Publisher, producer_config
from producers.sample import SampleClip
from producers.settings import PublisherSettings

SIZES = [(640, 480), (1280, 720)]
QUALITY = 80


def bench_encode(w: int, h: int, backend: Backend, n: int) -> tuple[float, int]:
    """Best-of-3 mean ms per frame and mean JPEG bytes."""
    clip = SampleClip(w, h, 30)
    frames = [clip.frame(i) for i in range(10)]
    enc = Encoder(QUALITY, backend=backend)
    sizes = [len(enc.encode(f)) for f in frames]
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for i in range(n):
            enc.encode(frames[i % len(frames)])
        best = min(best, (time.perf_counter() - t0) / n * 1000)
    return best, int(statistics.mean(sizes))


def bench_publish(kafka: KafkaSettings, topic: str, jpegs: list[bytes], n: int,
                  mock: bool) -> tuple[float, float, float]:
    """(CPU ms per frame, wall frames/s, submit() ms per frame on the caller's thread)."""
    settings = PublisherSettings(queue_frames=64)
    cfg = producer_config(kafka, settings, 4 << 20, "bench")
    if mock:
        cfg = {k: v for k, v in cfg.items() if k != "bootstrap.servers"}
        cfg["test.mock.num.brokers"] = 1
    pub = Publisher(cfg, settings, 4 << 20, ProducerMetrics())
    pub.add_stream("bench")
    pub.start()
    targets = (("face", topic),)
    # warm up: connection, metadata, producer id
    for i in range(20):
        pub.submit(Pending("bench", i, jpegs[0], [], targets, time.monotonic()), wait=True)
    for _ in range(200):
        if pub.stats("bench").acked >= 20:
            break
        time.sleep(0.05)
    base = pub.stats("bench").acked
    submit_s = 0.0
    c0, t0 = time.process_time(), time.perf_counter()
    for i in range(n):
        meta = FrameMeta("bench", i, 0, 640, 480, "bench")
        item = Pending("bench", i, jpegs[i % len(jpegs)], frame_headers(meta), targets,
                       time.monotonic())
        s0 = time.perf_counter()
        pub.submit(item, wait=True)
        submit_s += time.perf_counter() - s0
    for _ in range(1200):  # at most 60 s
        if pub.stats("bench").acked >= base + n:
            break
        time.sleep(0.05)
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    acked = pub.stats("bench").acked - base
    pub.close(10)
    if acked < n:
        raise SystemExit(f"only {acked} of {n} frames acknowledged")
    return cpu / n * 1000, n / wall, submit_s / n * 1000


def bench_raw(kafka: KafkaSettings, topic: str, jpegs: list[bytes], n: int,
              mock: bool) -> float:
    """CPU ms per frame of bare confluent-kafka produce + poll thread: the floor under Publisher."""
    import threading

    from confluent_kafka import Producer

    cfg = producer_config(kafka, PublisherSettings(), 4 << 20, "bench-raw")
    if mock:
        cfg = {k: v for k, v in cfg.items() if k != "bootstrap.servers"}
        cfg["test.mock.num.brokers"] = 1
    p = Producer(cfg)
    acked = [0]

    def on_delivery(err: object, msg: object) -> None:
        acked[0] += 1

    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            p.poll(0.05)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    headers: list[tuple[str, str | bytes | None]] = list(
        frame_headers(FrameMeta("bench", 0, 0, 640, 480, "bench")))
    for _ in range(20):
        p.produce(topic, jpegs[0], b"bench", on_delivery=on_delivery)
    p.flush(10)
    base = acked[0]
    c0 = time.process_time()
    for i in range(n):
        for _ in range(10_000):
            try:
                p.produce(topic, jpegs[i % len(jpegs)], b"bench", headers=headers,
                          on_delivery=on_delivery)
                break
            except BufferError:
                time.sleep(0.001)
    for _ in range(1200):
        if acked[0] >= base + n:
            break
        time.sleep(0.05)
    cpu = time.process_time() - c0
    stop.set()
    poller.join(1)
    p.flush(5)
    return cpu / n * 1000


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=1000)
    ap.add_argument("--bootstrap-servers", default="127.0.0.1:9092")
    ap.add_argument("--mock", action="store_true", help="librdkafka mock cluster, no broker")
    args = ap.parse_args(argv)
    kafka = KafkaSettings(bootstrap_servers=args.bootstrap_servers)
    topics = Topics(TopicSettings(prefix="evibench", frame_partitions=1))
    if not args.mock:
        ensure_topics(kafka, topics.specs(["face"]))
    print(f"{'size':>9} {'encoder':>10} {'KB':>5} {'encode ms':>9} {'publish CPU ms':>14} "
          f"{'raw CPU ms':>10} {'submit ms':>9} {'publish fps':>11} {'fps/core':>8}")
    for w, h in SIZES:
        enc = {b: bench_encode(w, h, b, 200) for b in ("cv2", "simplejpeg")}
        clip = SampleClip(w, h, 30)
        encoder = Encoder(QUALITY)
        jpegs = [encoder.encode(clip.frame(i)) for i in range(10)]
        runs = sorted(bench_publish(kafka, topics.frames("face"), jpegs, args.frames, args.mock)
                      for _ in range(3))
        pub_cpu, pub_fps, submit_ms = runs[1]  # the median run (by CPU per frame)
        raw = sorted(bench_raw(kafka, topics.frames("face"), jpegs, args.frames, args.mock)
                     for _ in range(3))[1]
        for backend, (ms, size) in enc.items():
            per_core = 1000 / (ms + pub_cpu)
            print(f"{w}x{h:<4} {backend:>10} {size / 1024:5.0f} {ms:9.2f} {pub_cpu:14.3f} "
                  f"{raw:10.3f} {submit_ms:9.3f} {pub_fps:11.0f} {per_core:8.0f}")
    where = "librdkafka mock cluster" if args.mock else args.bootstrap_servers
    print(f"({args.frames} frames per size to {where}; acks=all, idempotent, q{QUALITY})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
