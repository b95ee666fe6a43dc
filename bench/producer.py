"""Producer throughput: JPEG encode and Kafka publish timed separately, per frame size.

    .venv/bin/python bench/producer.py                 # real broker on 127.0.0.1:9092
    .venv/bin/python bench/producer.py --mock          # librdkafka's in-process mock cluster
    .venv/bin/python bench/producer.py --no-encode --compare linger.ms=5   # settings, one run

Encode: CPU ms per frame (thread CPU time, one core) of each available encoder at q80 4:2:0 on
the sample clip; the encoders take turns in small batches so load changes hit them alike;
median over batches. Publish: process CPU ms per frame (user + system, every thread, i.e. the
capture thread's submit, the sender and poll threads, librdkafka's threads and the kernel's TCP
work) for Publisher.submit -> librdkafka -> broker ack (acks=all, idempotent, WAIT backpressure
so nothing is dropped) with pre-encoded JPEGs: publishing overhead excluding capture and encode.
Raw: the same records through bare confluent-kafka produce() + a poll thread (the floor under
Publisher); publish and raw runs alternate. submit ms: wall time of Publisher.submit on the
capture thread (includes waiting for room). Publisher alone: the same with librdkafka replaced
by a null producer that acknowledges at once, i.e. our own threads, queues, callbacks and metrics.
Each publish number is the median of --runs runs. frames/s/core = 1000 / (encode ms + publish ms).
Wake-ups: voluntary context switches per frame (all threads), which other load barely moves.
--compare runs publish and raw again with other librdkafka settings, alternating with the
defaults, so a setting's effect is a ratio within one run.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from confluent_kafka import Producer, libversion

from evi.kafka import ensure_topics
from evi.settings import KafkaSettings, TopicSettings
from evi.topics import Topics
from evi.wire import FrameMeta, frame_headers
from producers.encode import BACKENDS, Backend, Encoder, unavailable
from producers.metrics import ProducerMetrics
from producers.publisher import Backpressure, Pending, Publisher, producer_config
from producers.sample import SampleClip
from producers.settings import PublisherSettings

SIZES = [(640, 480), (1280, 720)]
QUALITY = 80
MAX_MESSAGE = 4 << 20


def load_avg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def bench_encode(w: int, h: int, backends: list[Backend], batches: int,
                 per_batch: int) -> dict[Backend, tuple[float, float, int]]:
    """Per backend: (median CPU ms, median wall ms, mean JPEG bytes), interleaved batches."""
    clip = SampleClip(w, h, 30)
    frames = [clip.frame(i) for i in range(10)]
    encs = {b: Encoder(QUALITY, backend=b) for b in backends}
    sizes = {b: int(statistics.mean(len(e.encode(f)) for f in frames)) for b, e in encs.items()}
    cpu: dict[Backend, list[float]] = {b: [] for b in backends}
    wall: dict[Backend, list[float]] = {b: [] for b in backends}
    for _ in range(batches):
        for b, enc in encs.items():
            c0, t0 = time.thread_time(), time.perf_counter()
            for i in range(per_batch):
                enc.encode(frames[i % len(frames)])
            cpu[b].append((time.thread_time() - c0) / per_batch * 1000)
            wall[b].append((time.perf_counter() - t0) / per_batch * 1000)
    return {b: (statistics.median(cpu[b]), statistics.median(wall[b]), sizes[b])
            for b in backends}


def client_config(kafka: KafkaSettings, client_id: str, mock: bool,
                  extra: dict[str, Any] | None = None) -> dict[str, Any]:
    cfg = producer_config(kafka, PublisherSettings(), MAX_MESSAGE, client_id) | (extra or {})
    if mock:
        cfg = {k: v for k, v in cfg.items() if k != "bootstrap.servers"}
        cfg["test.mock.num.brokers"] = 1
    return cfg


def cpu_now() -> tuple[float, float]:
    """(user, system) CPU seconds of this process, all threads (librdkafka's included)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime, r.ru_stime


def sleeps_now() -> int:
    """Voluntary context switches of this process, all threads: each is a thread that blocked
    (poll, a lock, a condition) and was woken again. Unlike CPU time, other load barely moves it."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_nvcsw


def wait_acked(count: object, want: int, seconds: float = 60.0) -> None:
    for _ in range(int(seconds / 0.01)):
        if count() >= want:  # type: ignore[operator]
            return
        time.sleep(0.01)
    raise SystemExit(f"only {count()} of {want} frames acknowledged in {seconds:g}s")  # type: ignore[operator]


class NullProducer:
    """Stands in for librdkafka: takes records, acknowledges them on poll. With it the bench
    measures the Publisher's own machinery (threads, queues, callbacks, metrics) alone."""

    def __init__(self, config: object) -> None:
        self._lock = threading.Lock()
        self._pending: list[Callable[[None, None], None]] = []

    def produce(self, topic: str, value: bytes, key: bytes, headers: object = None,
                on_delivery: Callable[[None, None], None] | None = None) -> None:
        with self._lock:
            if on_delivery is not None:
                self._pending.append(on_delivery)

    def poll(self, timeout: float = 0.0) -> int:
        with self._lock:
            done, self._pending = self._pending, []
        for cb in done:
            cb(None, None)
        if not done:
            time.sleep(min(timeout, 0.001))
        return len(done)

    def flush(self, timeout: float = -1) -> int:
        self.poll()
        return 0

    def purge(self, in_queue: bool = True, in_flight: bool = True) -> None:
        pass


def bench_publish(kafka: KafkaSettings, topic: str, jpegs: list[bytes], n: int,
                  mock: bool, null: bool = False,
                  extra: dict[str, Any] | None = None
                  ) -> tuple[float, float, float, float, float]:  # fmt: skip
    """(user CPU ms, system CPU ms per frame, wall frames/s, submit() wall ms per frame,
    wake-ups per frame)."""
    settings = PublisherSettings(queue_frames=64)
    factory: Callable[[dict[str, Any]], Any] = NullProducer if null else Producer
    pub = Publisher(client_config(kafka, "bench", mock, extra), settings, MAX_MESSAGE,
                    ProducerMetrics(), factory)
    pub.add_stream("bench")
    pub.start()
    targets = (("face", topic),)
    w, h = 640, 480
    try:
        for i in range(20):  # warm up: connection, metadata, producer id
            pub.submit(Pending("bench", i, jpegs[0], [], targets, time.monotonic()),
                       Backpressure.WAIT)
        wait_acked(lambda: pub.stats("bench").acked, 20)
        base = pub.stats("bench").acked
        submit_s = 0.0
        (u0, s0_), t0, w0 = cpu_now(), time.perf_counter(), sleeps_now()
        for i in range(n):
            meta = FrameMeta("bench", i, 0, w, h, "bench")
            item = Pending("bench", i, jpegs[i % len(jpegs)], frame_headers(meta), targets,
                           time.monotonic())
            s0 = time.perf_counter()
            pub.submit(item, Backpressure.WAIT)
            submit_s += time.perf_counter() - s0
        wait_acked(lambda: pub.stats("bench").acked, base + n)
        (u1, s1), wall, w1 = cpu_now(), time.perf_counter() - t0, sleeps_now()
    finally:
        pub.close(10)
    if pub.stats("bench").dropped:
        raise SystemExit(f"frames dropped: {dict(pub.stats('bench').dropped)}")
    return (u1 - u0) / n * 1000, (s1 - s0_) / n * 1000, n / wall, submit_s / n * 1000, (w1 - w0) / n


def bench_raw(kafka: KafkaSettings, topic: str, jpegs: list[bytes], n: int,
              mock: bool, extra: dict[str, Any] | None = None) -> tuple[float, float, float]:
    """(user, system) CPU ms per frame of bare confluent-kafka produce + a poll thread, and
    wake-ups per frame."""
    p = Producer(client_config(kafka, "bench-raw", mock, extra))
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
    try:
        for _ in range(20):
            p.produce(topic, jpegs[0], b"bench", on_delivery=on_delivery)
        wait_acked(lambda: acked[0], 20)
        base = acked[0]
        (u0, s0), w0 = cpu_now(), sleeps_now()
        for i in range(n):
            for _ in range(10_000):
                try:
                    p.produce(topic, jpegs[i % len(jpegs)], b"bench", headers=headers,
                              on_delivery=on_delivery)
                    break
                except BufferError:
                    time.sleep(0.001)
        wait_acked(lambda: acked[0], base + n)
        (u1, s1), w1 = cpu_now(), sleeps_now()
    finally:
        stop.set()
        poller.join(1)
        p.flush(5)
    return (u1 - u0) / n * 1000, (s1 - s0) / n * 1000, (w1 - w0) / n


def parse_setting(spec: str) -> dict[str, Any]:
    """`linger.ms=5,socket.send.buffer.bytes=4194304` → librdkafka settings (ints where whole)."""
    out: dict[str, Any] = {}
    for part in spec.split(","):
        key, _, value = part.partition("=")
        if not key or not value:
            raise SystemExit(f"--compare wants key=value[,key=value]: {spec!r}")
        out[key.strip()] = int(value) if value.strip().lstrip("-").isdigit() else value.strip()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--frames", type=int, default=3000, help="frames per publish run")
    ap.add_argument("--runs", type=int, default=3, help="publish runs per size (median)")
    ap.add_argument("--batches", type=int, default=40, help="encode batches per encoder")
    ap.add_argument("--sizes", nargs="+", default=[f"{w}x{h}" for w, h in SIZES])
    ap.add_argument("--no-encode", action="store_true", help="publish only")
    ap.add_argument("--compare", action="append", default=[], metavar="KEY=VALUE[,...]",
                    help="also run publish and raw with these librdkafka settings, "
                         "alternating with the defaults (repeatable)")
    ap.add_argument("--bootstrap-servers", default="127.0.0.1:9092")
    ap.add_argument("--mock", action="store_true", help="librdkafka mock cluster, no broker")
    args = ap.parse_args(argv)
    kafka = KafkaSettings(bootstrap_servers=args.bootstrap_servers)
    topics = Topics(TopicSettings(prefix="evibench", frame_partitions=1))
    if not args.mock:
        ensure_topics(kafka, topics.specs(["face"]))
    backends = [b for b in BACKENDS if not unavailable(b)]
    missing = [f"{b} ({unavailable(b)})" for b in BACKENDS if b not in backends]
    variants: list[tuple[str, dict[str, Any]]] = [("defaults", {})]
    variants += [(spec, parse_setting(spec)) for spec in args.compare]
    load0 = load_avg()
    print(f"{cpu_model()}, {os.cpu_count()} cores; librdkafka {libversion()[0]}; "
          f"load average at start {load0}")
    if missing:
        print("not measured: " + "; ".join(missing))
    enc_rows: list[str] = []
    pub_rows: list[str] = []
    topic = topics.frames("face")
    for size in args.sizes:
        w, h = (int(x) for x in size.split("x"))
        enc = {} if args.no_encode else bench_encode(w, h, backends, args.batches, 20)
        clip = SampleClip(w, h, 30)
        encoder = Encoder(QUALITY, backend=backends[0])
        jpegs = [encoder.encode(clip.frame(i)) for i in range(10)]
        runs: dict[str, list[tuple[float, float, float, float, float]]] = {
            v: [] for v, _ in variants}
        raws: dict[str, list[tuple[float, float, float]]] = {v: [] for v, _ in variants}
        nulls = []
        for _ in range(args.runs):  # alternate, so drifting load hits all alike
            for name, extra in variants:
                runs[name].append(bench_publish(kafka, topic, jpegs, args.frames, args.mock,
                                                extra=extra))
                raws[name].append(bench_raw(kafka, topic, jpegs, args.frames, args.mock, extra))
            nulls.append(bench_publish(kafka, topic, jpegs, args.frames, args.mock, null=True))
        machinery = statistics.median(r[0] + r[1] for r in nulls)
        kb = statistics.mean(len(j) for j in jpegs) / 1024
        pub_cpu = 0.0
        for name, _ in variants:
            rs = runs[name]
            cpu = statistics.median(r[0] + r[1] for r in rs)
            pub_cpu = pub_cpu or cpu  # the defaults' figure, for the encode table
            raw = statistics.median(u + s for u, s, _ in raws[name])
            pub_rows.append(
                f"| {w}x{h} | {name} | {kb:.0f} | **{cpu:.3f}** | "
                f"{statistics.median(r[0] for r in rs):.3f} | "
                f"{statistics.median(r[1] for r in rs):.3f} | {raw:.3f} | "
                f"{statistics.median(u for u, _, _ in raws[name]):.3f} | {machinery:.3f} | "
                f"{statistics.median(r[3] for r in rs):.3f} | "
                f"{statistics.median(r[2] for r in rs):.0f} | "
                f"{statistics.median(r[4] for r in rs):.1f} | "
                f"{statistics.median(r[2] for r in raws[name]):.1f} | "
                f"{' '.join(f'{r[0] + r[1]:.3f}' for r in rs)} | "
                f"{' '.join(f'{u + s:.3f}' for u, s, _ in raws[name])} |")
        for b, (ecpu, wall, nbytes) in enc.items():
            enc_rows.append(f"| {w}x{h} | {b} | {nbytes / 1024:.0f} | {ecpu:.2f} | {wall:.2f} | "
                            f"{pub_cpu:.3f} | {1000 / (ecpu + pub_cpu):.0f} |")
    where = "librdkafka mock cluster" if args.mock else args.bootstrap_servers
    if enc_rows:
        print(f"\nEncode + publish, q{QUALITY} 4:2:0 (frames/s/core = 1000 / (encode + publish "
              "CPU))")
        print("| size | encoder | KB | encode CPU ms | encode wall ms | publish CPU ms | "
              "frames/s/core |")
        print("|---|---|---:|---:|---:|---:|---:|")
        print("\n".join(enc_rows))
    print(f"\nPublish only ({args.frames} frames x {args.runs} runs per size to {where}; "
          "acks=all, idempotent, median)")
    print("| size | settings | KB | publish CPU ms/frame | user | sys | raw confluent-kafka CPU ms "
          "| raw user | Publisher alone | submit wall ms | acked frames/s | wake-ups/frame | "
          "raw wake-ups/frame | runs (CPU ms) | raw runs |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|")
    print("\n".join(pub_rows))
    print(f"\nload average at start {load0}, at end {load_avg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
