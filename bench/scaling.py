"""Scaling on one machine: throughput of 1 vs 2 processor workers held to one core each, and what
adding or removing a worker costs (rebalance).

    python bench/scaling.py [--frames 2400] [--rounds 2] [--reps 3]

Throughput: each run gets fresh topics (12 partitions) filled with --frames frames from 12 sample
streams *before* any worker starts; then K workers start together, worker i on core i
(`--cpu i --threads 1 --decode-threads 1`). Rate = results between the 10th and 90th percentile
of processed_ms / that span, so start-up and the tail are left out. Runs alternate 1, 2, 1, 2 so
drifting load from other work on the machine hits both; the ratio is taken per round. Over the
same window: "cpu" = the share of its core each worker got (1.0 = all of it), "fps/cpu-s" =
frames per worker CPU-second, "others" = the machine's other busy cores (/proc/stat). On a shared
machine the throughput ratio is capped by the CPU the workers get; the fps/cpu-s ratio says
whether a second worker uses its CPU as well as the first (1.0 = linear scaling).

Rebalance: worker 0 serves a steady 36 frames/s (12 streams x 3 fps); worker 1 starts: seconds to
its web server, to owning partitions, to its first result (its /metrics); then SIGTERM: seconds to
exit and until worker 0 owns all 12 partitions. "gap": longest time with no result on any stream
/ on one stream around each event. Bounded: ~2 x rounds x (frames / 60 + 20) s + reps x 45 s.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

from confluent_kafka import Consumer, KafkaException, TopicPartition

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python bench/scaling.py`

from bench.broker import broker_placed
from evi.kafka import admin, ensure_topics, wait_for_broker
from evi.scaleplan import describe_group
from evi.settings import REPO_ROOT, KafkaSettings, TopicSettings
from evi.topics import Topics

PARTITIONS, STREAMS = 12, 12
KAFKA = KafkaSettings(bootstrap_servers=os.environ.get("EVI_KAFKA__BOOTSTRAP_SERVERS",
                                                       "127.0.0.1:9092"))
LOGS = REPO_ROOT / "test-artifacts" / "bench-scaling"
HZ = os.sysconf("SC_CLK_TCK")
ADMIN = admin(KAFKA)


def evi(name: str, *args: str, cpu: int | None = None) -> subprocess.Popen[bytes]:
    LOGS.mkdir(parents=True, exist_ok=True)
    log = open(LOGS / f"{name}.log", "wb")  # noqa: SIM115 - the child owns it
    cmd = [sys.executable, "-m", "evi.cli", *args]
    if cpu is not None:  # as a pod with a one-CPU limit: one core, one thread of each kind
        cmd = [*cmd, "--cpu", str(cpu), "--threads", "1", "--decode-threads", "1"]
    return subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)


def stop(p: subprocess.Popen[bytes], timeout: float = 25.0) -> None:
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
    try:
        p.wait(timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait(5)


def new_topics() -> Topics:
    t = Topics(TopicSettings(prefix=f"bsc{uuid.uuid4().hex[:8]}", frame_partitions=PARTITIONS))
    ensure_topics(KAFKA, t.specs(["face"]))
    return t


def produce(t: Topics, per_stream: int, fps: float) -> subprocess.Popen[bytes]:
    src = [a for i in range(STREAMS) for a in ("--source", "sample:", "--stream", f"s{i:02d}")]
    return evi("producer", "produce", *src, "--kind", "face", "--loop", "--count",
               str(per_stream), "--fps", str(fps), "--topic-prefix", t.prefix,
               "--bootstrap-servers", KAFKA.bootstrap_servers)


def worker(t: Topics, i: int, port: int) -> subprocess.Popen[bytes]:
    return evi(f"worker-{i}", "process", "--kind", "face", "--topic-prefix", t.prefix,
               "--bootstrap-servers", KAFKA.bootstrap_servers, "--web-port", str(port), cpu=i)


class Results:
    def __init__(self, t: Topics) -> None:
        self.c = Consumer(KAFKA.client_config() | {"group.id": f"b-{uuid.uuid4().hex}"})
        self.c.assign([TopicPartition(t.results("face"), p, 0) for p in range(PARTITIONS)])
        self.rows: list[tuple[str, int, float]] = []  # (stream, seq, processed s)
        self.unique: set[tuple[str, int]] = set()  # a rebalance may repeat a few (at-least-once)

    def read(self, until: float, want: int | None = None,
             sample: Callable[[], None] | None = None) -> None:
        """Until `want` distinct (stream, seq) have results, or `until`."""
        while time.time() < until and (want is None or len(self.unique) < want):
            if sample:
                sample()
            for m in self.c.consume(500, 0.2):
                if m.error() is None:
                    d = json.loads(m.value() or b"{}")
                    self.rows.append((d["stream"], d["seq"], d["processed_ms"] / 1000))
                    self.unique.add((d["stream"], d["seq"]))

    def gaps(self, t0: float, t1: float) -> tuple[float, float]:
        rows = sorted((ts, s) for s, _, ts in self.rows if t0 <= ts < t1)
        every = max((b[0] - a[0] for a, b in itertools.pairwise(rows)), default=t1 - t0)
        one = max((b - a for s in {s for _, s in rows}
                   for a, b in itertools.pairwise([ts for ts, x in rows if x == s])), default=0.0)
        return every, one


def cpu_s(pid: int) -> float:
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(f[11]) + int(f[12])) / HZ


def busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot."""
    v = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    return (sum(v) - v[3] - v[4]) / HZ, sum(v) / HZ


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def frames_done(port: int) -> float:
    """The worker's evi_processor_frames_total; -1 while its web server does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as r:
            text = r.read().decode()
    except OSError:
        return -1.0
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("evi_processor_frames_total{"))


def throughput_run(k: int, frames: int) -> dict[str, float]:
    t = new_topics()
    per = frames // STREAMS
    p = produce(t, per, 0)
    if p.wait(300) != 0:
        raise SystemExit(f"producer failed: see {LOGS}/producer.log")
    res = Results(t)
    load0 = os.getloadavg()[0]
    ws = [worker(t, i, free_port()) for i in range(k)]
    cpu: list[tuple[float, float, float]] = []  # (time, workers' CPU s, machine busy CPU s)
    # Workers join one after another: the first owns every partition until the others' joins
    # rebalance the group. The rate counts from when all k own partitions (the group's steady
    # state, what a scaled-out group runs in), so a join's pause is not billed as throughput.
    settled: list[float] = []

    def sample() -> None:
        cpu.append((time.time(), sum(cpu_s(w.pid) for w in ws), busy()[0]))
        if not settled:
            members = owned(t)
            if len(members) == k and min(members) > 0:
                settled.append(time.time())

    try:
        res.read(time.time() + 60 + frames / 20, want=per * STREAMS, sample=sample)
    finally:
        for w in ws:
            stop(w)
        res.c.close()
    if len(res.unique) < per * STREAMS:
        raise SystemExit(f"{k} worker(s) did not finish {per * STREAMS} frames: see {LOGS}")
    first: dict[tuple[str, int], float] = {}
    for stream, seq, at in res.rows:  # a repeated frame counts once: useful throughput
        first.setdefault((stream, seq), at)
    ts = sorted(first.values())
    if not settled:
        raise SystemExit(f"the group never had {k} members owning partitions: see {LOGS}")
    hi = ts[len(ts) * 9 // 10]
    steady = [x for x in ts if max(settled[0], ts[len(ts) // 10]) <= x <= hi]
    if len(steady) < len(ts) // 4:
        raise SystemExit(f"only {len(steady)} results after the group settled: raise --frames")
    lo = steady[0]
    a = min(cpu, key=lambda c: abs(c[0] - lo))
    b = min(cpu, key=lambda c: abs(c[0] - hi))
    span = b[0] - a[0]
    fps = (len(steady) - 1) / (hi - lo)
    return {
        "workers": k, "frames": len(ts), "dups": len(res.rows) - len(ts), "fps": fps,
        "cpu": (b[1] - a[1]) / span / k,
        "per_cpu_s": fps * span / (b[1] - a[1]),
        "others": ((b[2] - a[2]) - (b[1] - a[1])) / span,
        "loadavg": (load0 + os.getloadavg()[0]) / 2,
    }


def wait(cond: Callable[[], bool], timeout: float, step: float = 0.1) -> float:
    """The time at which cond() first holds (inf if not within timeout)."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        if cond():
            return time.time()
        time.sleep(step)
    return float("inf")


def owned(t: Topics) -> list[int]:
    try:
        return sorted(len(p) for p in describe_group(KAFKA, t.group("face"), client=ADMIN)[1])
    except (KafkaException, TimeoutError):  # transient: it only delays the reading
        return []


def cycle(t: Topics, res: Results) -> dict[str, float]:
    """Add a worker on core 1, then take it away; times and gaps of both rebalances."""
    port = free_port()
    t0 = time.time()
    w2 = worker(t, 1, port)
    health = wait(lambda: frames_done(port) >= 0, 90)
    two = wait(lambda: len(o := owned(t)) == 2 and min(o) > 0, 90, 0.25)
    first = wait(lambda: frames_done(port) > 0, 90)
    res.read(time.time() + 8)
    t_stop = time.time()
    w2.send_signal(signal.SIGTERM)
    exited = wait(lambda: w2.poll() is not None, 30)
    back = wait(lambda: owned(t) == [PARTITIONS], 60, 0.25)
    stop(w2)
    res.read(time.time() + 8)
    out_gap, in_gap = res.gaps(t0, first + 5), res.gaps(t_stop, back + 5)
    return {"healthz": health - t0, "owns": two - t0, "first": first - t0,
            "out_gap": out_gap[0], "out_gap_stream": out_gap[1],
            "exit": exited - t_stop, "back": back - t_stop,
            "in_gap": in_gap[0], "in_gap_stream": in_gap[1],
            "quiet_gap_stream": res.gaps(t_stop - 7, t_stop)[1]}


def rebalance(reps: int) -> list[dict[str, float]]:
    t = new_topics()
    prod = produce(t, int(3 * (reps * 45 + 40)), 3)
    w1 = worker(t, 0, free_port())
    res = Results(t)
    out: list[dict[str, float]] = []
    try:
        if wait(lambda: owned(t) == [PARTITIONS], 90, 0.25) == float("inf"):
            raise SystemExit(f"worker 0 never owned the partitions: see {LOGS}/worker-0.log")
        res.read(time.time() + 8)
        for _ in range(reps):
            out.append(cycle(t, res))
    finally:
        stop(w1)
        stop(prod)
        res.c.close()
    return out


IN_PROCESS = """
import os, sys
os.sched_setaffinity(0, {int(sys.argv[1])})
from bench.processor import in_process, jpegs
from evi.settings import REPO_ROOT
from processors.models import default_models
from processors.pipeline import FramePipeline
from processors.settings import ProcessorSettings
s = ProcessorSettings()
m = default_models()["face"].model_copy(update={"inference_threads": 1})
p = FramePipeline.create("face", m, REPO_ROOT / ".cache", decode_threads=1, batch=s.infer_batch)
frames = jpegs(640, 480)
in_process(p, frames, 200, s.batch_max, s.batches_in_flight)  # warm-up
print(in_process(p, frames, int(sys.argv[2]), s.batch_max, s.batches_in_flight)[0])
p.close()
"""


def ceiling(k: int, frames: int) -> float:
    """The machine's own 1 vs 2 core scaling: k processes each running the worker's pipeline
    in process (bench/processor.py's (b): no Kafka, no faust) on core i, at once; frames/s."""
    ps = [subprocess.Popen([sys.executable, "-c", IN_PROCESS, str(i), str(frames // k)],
                           cwd=REPO_ROOT, stdout=subprocess.PIPE) for i in range(k)]  # fmt: skip
    return sum(float(p.communicate(timeout=300)[0].split()[-1]) for p in ps)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=2400, help="frames per throughput run")
    ap.add_argument("--rounds", type=int, default=2, help="(1 worker, 2 workers) pairs")
    ap.add_argument("--reps", type=int, default=3, help="scale-out/in cycles")
    ap.add_argument("--broker-nice", type=int, choices=range(0, 20), metavar="0..19",
                    help="run the broker at this nice level for the bench (19: it takes what the "
                         "workers leave, as on its own machine); restored afterwards")  # fmt: skip
    a = ap.parse_args()
    if not (120 <= a.frames <= 20_000 and 1 <= a.rounds <= 5 and 1 <= a.reps <= 10):
        ap.error("want 120 <= --frames <= 20000, 1 <= --rounds <= 5, 1 <= --reps <= 10")
    wait_for_broker(KAFKA, 30)
    with broker_placed(nice=a.broker_nice):
        return bench(a)


def bench(a: argparse.Namespace) -> int:
    print(f"cores {os.cpu_count()}, loadavg at start {os.getloadavg()[0]:.1f}, broker nice "
          f"{a.broker_nice or 0}\n", flush=True)
    print("throughput (frames/s; worker i on core i, 1 inference + 1 decode thread)")
    print(f"{'round':>5} {'workers':>7} {'frames':>6} {'dups':>4} {'fps':>7} {'cpu':>5} "
          f"{'fps/cpu-s':>9} {'others':>6} {'loadavg':>7}")
    ratios, per_cpu, ceilings = [], [], []
    for r in range(a.rounds):
        pair = []
        for k in (1, 2):
            m = throughput_run(k, a.frames)
            pair.append(m)
            print(f"{r + 1:>5} {k:>7} {m['frames']:>6.0f} {m['dups']:>4.0f} {m['fps']:>7.1f} "
                  f"{m['cpu']:>5.2f} {m['per_cpu_s']:>9.1f} {m['others']:>6.2f} "
                  f"{m['loadavg']:>7.1f}", flush=True)
        ratios.append(pair[1]["fps"] / pair[0]["fps"])
        per_cpu.append(pair[1]["per_cpu_s"] / pair[0]["per_cpu_s"])
        alone, both = ceiling(1, a.frames), ceiling(2, a.frames)
        ceilings.append(both / alone)
        print(f"{r + 1:>5} no Kafka: pipeline in process, 1 core {alone:.1f}, 2 cores {both:.1f} "
              f"frames/s ({both / alone:.2f}x)", flush=True)
    print(f"2 workers / 1 worker, throughput: {', '.join(f'{x:.2f}x' for x in ratios)} "
          f"(median {statistics.median(ratios):.2f}x; target >= 1.7x)")
    print(f"2 cores / 1 core without Kafka (this machine's ceiling): "
          f"{', '.join(f'{x:.2f}x' for x in ceilings)} (median {statistics.median(ceilings):.2f}x)")
    print(f"2 workers / 1 worker, frames per CPU-second: "
          f"{', '.join(f'{x:.2f}x' for x in per_cpu)} (1.00x = the second core is used as well "
          f"as the first; x 2 = the ratio on two free cores)\n", flush=True)
    print("rebalance (seconds; out: from `evi process` start, in: from SIGTERM; "
          "healthz = its web server up)")
    cols = ["healthz", "owns", "first", "out_gap", "out_gap_stream", "exit", "back", "in_gap",
            "in_gap_stream", "quiet_gap_stream"]
    print(f"{'rep':>3} " + " ".join(f"{c:>{max(len(c), 6)}}" for c in cols))
    reps = rebalance(a.reps)
    for i, row in enumerate(reps):
        print(f"{i + 1:>3} " + " ".join(f"{row[c]:>{max(len(c), 6)}.2f}" for c in cols))
    print(f"\nloadavg at end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
