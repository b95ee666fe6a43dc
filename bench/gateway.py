"""Gateway fan-out: messages/s delivered, delivery latency and the gateway's CPU per delivered
message with 1, 50 and 200 websocket viewers of one stream; then the gateway's RSS with 10,000
idle connections, and the last row again beside them.

    .venv/bin/python bench/gateway.py                      # real broker on 127.0.0.1:9092
    .venv/bin/python bench/gateway.py --clients 1 50 --rate 20 --seconds 5 --idle 0
    .venv/bin/python bench/gateway.py --clients 50 200 --idle 0 --baseline /tmp/base  # A/B

One `evi gateway` child process (its own topic prefix) serves N viewers of one stream, held by
`--workers` client processes (bench/wsclients.py), so the clients neither share the bench's event
loop nor one core. A feeder thread publishes frame + result pairs at a fixed rate (a real 640x480
JPEG of the sample clip, ~35 kB, and a result with one detection) for a fixed time per row, each
row its own stream. Latency = client receive time - the result's `processed_ms`, which the feeder
sets just before producing: Kafka produce → gateway consume → pairing → websocket. Offered =
rate x clients; delivered counts result messages with their JPEG received by all clients during
the row. gw CPU is the gateway process's user+system time (/proc/<pid>/stat) over the row's wall
time (100 % = one core) and the kernel's share of it, gw us/msg that CPU time divided by the
messages delivered; client CPU the client processes' CPU, which share the machine.

Idle: `--idle` connections, each to a stream of its own that nobody publishes, opened by the
same client processes (the fd limit raised for them and the gateway with setrlimit); the
gateway's VmRSS before and with them open. `--baseline TREE` (another checkout, e.g. a `git
worktree` of the commit before) runs its gateway on every row too, right after this one's and
alternating which goes first, so ratios are measured under the same load. Bounded: every row
runs `--seconds` plus at most ~40 s of set-up and drain; the idle connections get
`--idle-connect-s` to open.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import cv2
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from evi.kafka import ensure_topics
from evi.settings import KafkaSettings, TopicSettings
from evi.topics import Topics
from evi.wire import Detection, FrameMeta, Result, encode_result, frame_headers
from producers.sample import SampleClip

REPO = Path(__file__).resolve().parent.parent
STREAM = "bench"


def sample_jpeg() -> bytes:
    ok, buf = cv2.imencode(".jpg", SampleClip(640, 480, 30).frame(10),
                           [cv2.IMWRITE_JPEG_QUALITY, 80])
    assert ok
    return buf.tobytes()


def feed(kafka: KafkaSettings, topics: Topics, stream: str, rate: float, seconds: float,
         stop: threading.Event) -> int:
    """Publish frame+result pairs at `rate` per second for `seconds`; return how many."""
    p = Producer(kafka.client_config() | {"linger.ms": 0, "acks": 1})
    jpeg = sample_jpeg()
    det = [Detection("face", 0.97, 0.41, 0.10, 0.57, 0.33)]
    t0 = time.monotonic()
    n = 0
    while not stop.is_set() and time.monotonic() - t0 < seconds:
        due = t0 + n / rate
        time.sleep(max(0.0, due - time.monotonic()))
        now = int(time.time() * 1000)
        meta = FrameMeta(stream, n, now, 640, 480, producer="bench")
        headers: list[tuple[str, str | bytes | None]] = list(frame_headers(meta))
        p.produce(topics.frames("face"), jpeg, stream.encode(), headers=headers)
        r = Result(stream, n, now, int(time.time() * 1000), "face", "bench", det, 1.0, 640, 480)
        p.produce(topics.results("face"), encode_result(r), stream.encode())
        p.poll(0)
        n += 1
    p.flush(10)
    return n


def cpu_seconds(pid: int) -> float:
    return sum(cpu_split(pid))


def cpu_split(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def rss_mib(pid: int) -> float:
    for text in Path(f"/proc/{pid}/status").read_text().splitlines():
        if text.startswith("VmRSS:"):
            return int(text.split()[1]) / 1024
    return 0.0


def get_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=30) as r:
        data: dict[str, Any] = json.load(r)
        return data


def raise_fd_limit(want: int) -> int:
    """Soft fd limit up to `want` (at most the hard one); the gateway and client processes
    started after this inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    cap = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft != resource.RLIM_INFINITY and soft < cap:
        resource.setrlimit(resource.RLIMIT_NOFILE, (cap, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class Clients:
    """Client processes (bench/wsclients.py), `counts[i]` connections in the i-th."""

    def __init__(self, mode: str, url: str, counts: list[int], start: int, connect_s: float):
        self.procs: list[subprocess.Popen[str]] = []
        first = start
        for n in counts:
            self.procs.append(subprocess.Popen(
                [sys.executable, str(REPO / "bench" / "wsclients.py"), mode, url, str(n),
                 str(first), "--connect-s", str(connect_s)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO))
            if mode == "idle":
                first += n

    def ready(self) -> int:
        """Connections open, once every process says so (each gives up after its connect_s)."""
        total = 0
        for p in self.procs:
            assert p.stdout is not None
            words = p.stdout.readline().split()
            total += int(words[1]) if len(words) == 2 and words[0] == "ready" else 0
        return total

    def cpu(self) -> float:
        return sum(cpu_seconds(p.pid) for p in self.procs)

    def end(self, last_seq: int | None = None) -> list[dict[str, Any]]:
        for p in self.procs:
            assert p.stdin is not None
            p.stdin.write("end\n" if last_seq is None else f"end {last_seq}\n")
            p.stdin.flush()
        out = []
        for p in self.procs:
            assert p.stdout is not None
            text = p.stdout.readline()
            out.append(json.loads(text) if text else {"connected": 0, "delivered": 0,
                                                      "latencies_ms": []})
        return out

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait(10)


def split(n: int, parts: int) -> list[int]:
    parts = max(1, min(parts, n))
    return [n // parts + (1 if i < n % parts else 0) for i in range(parts)]


def run_row(port: int, pid: int, kafka: KafkaSettings, topics: Topics, n_clients: int,
            rate: float, seconds: float, workers: int, stream: str) -> dict[str, float]:
    url = f"ws://127.0.0.1:{port}/ws/streams/{stream}"
    warm = 1.0  # seconds of results not counted: clients and gateway settle
    first_seq = int(warm * rate)
    clients = Clients("viewers", url, split(n_clients, workers), first_seq, 60.0)
    try:
        connected = clients.ready()
        if connected != n_clients:
            raise SystemExit(f"only {connected} of {n_clients} viewers connected")
        stats0 = get_json(f"http://127.0.0.1:{port}/api/stats")
        stop = threading.Event()
        box: list[int] = []
        feeder = threading.Thread(
            target=lambda: box.append(feed(kafka, topics, stream, rate, warm + seconds, stop)))
        feeder.start()
        time.sleep(warm)
        (user0, sys0), own0, t0 = cpu_split(pid), clients.cpu(), time.monotonic()
        feeder.join(warm + seconds + 30)
        stop.set()
        sent = box[0] if box else 0
        reports = clients.end(sent - 1)  # each waits (at most 5 s) for the last result
        wall = time.monotonic() - t0
        user1, sys1 = cpu_split(pid)
        gw_cpu, own = user1 - user0 + sys1 - sys0, clients.cpu() - own0
    finally:
        clients.close()
    stats1 = get_json(f"http://127.0.0.1:{port}/api/stats")
    lat = sorted(x for r in reports for x in r["latencies_ms"]) or [0.0]
    delivered = sum(int(r["delivered"]) for r in reports)
    offered = (sent - first_seq) * n_clients
    return {
        "clients": n_clients,
        "offered_per_s": rate * n_clients,
        "delivered_per_s": delivered / seconds,
        "delivered_pct": 100 * delivered / max(1.0, offered),
        "p50_ms": statistics.median(lat),
        "p99_ms": lat[min(len(lat) - 1, int(0.99 * len(lat)))],
        "drops": float(int(stats1["dropped_to_clients"]) - int(stats0["dropped_to_clients"])),
        "cpu_pct": 100 * gw_cpu / wall,
        "sys_pct": 100 * (sys1 - sys0) / max(gw_cpu, 1e-9),
        "us_per_msg": 1e6 * gw_cpu / max(1, delivered),
        "client_cpu_pct": 100 * own / wall,
    }


def print_header() -> None:
    print(f"{'clients':>7} {'offered/s':>10} {'delivered/s':>12} {'delivered':>10} "
          f"{'p50 ms':>8} {'p99 ms':>8} {'drops':>6} {'gw CPU':>7} {'of it sys':>9} "
          f"{'gw us/msg':>9} {'client CPU':>10}")


def print_row(r: dict[str, float], label: str = "") -> None:
    print(f"{int(r['clients']):>7} {r['offered_per_s']:>10.0f} {r['delivered_per_s']:>12.0f} "
          f"{r['delivered_pct']:>9.1f}% {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} "
          f"{r['drops']:>6.0f} {r['cpu_pct']:>6.0f}% {r['sys_pct']:>8.0f}% {r['us_per_msg']:>9.1f} "
          f"{r['client_cpu_pct']:>9.0f}%{label}", flush=True)


class Gateway:
    """One `evi gateway` child from a source tree, on topics of its own."""

    def __init__(self, label: str, tree: Path, a: argparse.Namespace, kafka: KafkaSettings):
        self.label, self.kafka = label, kafka
        self.topics = Topics(TopicSettings(prefix=f"bench{uuid.uuid4().hex[:8]}",
                                           frame_partitions=1))
        ensure_topics(kafka, self.topics.specs(["face"]))
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        room = str(a.idle + max(a.clients, default=0) + 64)
        env = {**os.environ, "EVI_CLIENT_QUEUE": "64", "EVI_LOG_LEVEL": "WARNING",
               "EVI_MAX_CONNECTIONS": room, "EVI_MAX_CONNECTIONS_PER_CLIENT": room}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "evi.cli", "gateway", "--port", str(self.port),
             "--bootstrap-servers", a.bootstrap_servers, "--topic-prefix", self.topics.prefix,
             "--no-auth", "--metrics-port", "0"], cwd=tree, env=env, stdout=subprocess.DEVNULL)
        self.pid = self.proc.pid

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 30
        while True:
            try:
                get_json(f"http://127.0.0.1:{self.port}/readyz")
                return
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise SystemExit(f"gateway ({self.label}) did not become ready") from None
                time.sleep(0.3)

    def row(self, a: argparse.Namespace, n: int, stream: str) -> dict[str, float]:
        return run_row(self.port, self.pid, self.kafka, self.topics, n, a.rate, a.seconds,
                       a.workers, stream)

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        names = [s.name for s in self.topics.specs(["face"])]
        admin = AdminClient(self.kafka.client_config())
        for fut in admin.delete_topics(names, operation_timeout=30).values():
            fut.result(30)


def idle_phase(g: Gateway, a: argparse.Namespace) -> None:
    """`--idle` connections to streams nobody publishes; the gateway's RSS with them open, and
    (with --clients) the last viewer row again beside them: a message's cost must not grow."""
    pid = g.pid
    rss0, t0, cpu0 = rss_mib(pid), time.monotonic(), cpu_seconds(pid)
    url = f"ws://127.0.0.1:{g.port}/ws/streams/idle"
    clients = Clients("idle", url, split(a.idle, a.workers), 0, a.idle_connect_s)
    try:
        connected = clients.ready()
        took, cpu = time.monotonic() - t0, cpu_seconds(pid) - cpu0
        time.sleep(1.0)  # the last handshakes' garbage collected, the RSS settled
        rss1 = rss_mib(pid)
        print(f"\n{g.label}: idle connections: {connected} of {a.idle} open in {took:.1f} s "
              f"(gateway CPU {1000 * cpu / max(1, connected):.2f} ms each); gateway RSS "
              f"{rss0:.0f} MiB before, {rss1:.0f} MiB with them "
              f"({1024 * (rss1 - rss0) / max(1, connected):.1f} KiB each)", flush=True)
        if a.clients:
            n = a.clients[-1]
            print(f"{n} viewers again, beside the {connected} idle connections:")
            print_header()
            print_row(g.row(a, n, f"{STREAM}-beside-idle"), f"  {g.label}, beside idle")
            print(f"gateway RSS {rss_mib(pid):.0f} MiB (load {os.getloadavg()[0]:.1f})",
                  flush=True)
        clients.end()
    finally:
        clients.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bootstrap-servers", default="127.0.0.1:9092")
    ap.add_argument("--clients", type=int, nargs="*", default=[1, 50, 200])
    ap.add_argument("--rate", type=float, default=30.0, help="results per second (one stream)")
    ap.add_argument("--seconds", type=float, default=10.0, help="measured seconds per row")
    ap.add_argument("--workers", type=int, default=4, help="client processes")
    ap.add_argument("--idle", type=int, default=10_000, help="idle connections (0: none)")
    ap.add_argument("--idle-connect-s", type=float, default=120.0)
    ap.add_argument("--baseline", type=Path, metavar="TREE",
                    help="another checkout (e.g. a `git worktree` of the commit before): its "
                         "gateway runs every row too, right after this one's, for ratios "
                         "measured under the same load")
    a = ap.parse_args()
    fds = raise_fd_limit(a.idle + max(a.clients, default=0) + 1024)
    kafka = KafkaSettings(bootstrap_servers=a.bootstrap_servers)
    trees = [("this", REPO)] + ([("baseline", a.baseline.resolve())] if a.baseline else [])
    gws: list[Gateway] = []
    try:
        for label, tree in trees:
            gws.append(Gateway(label, tree, a, kafka))
        for g in gws:
            g.wait_ready()
        print(f"gateway fan-out: 1 stream at {a.rate:g} results/s with a "
              f"{len(sample_jpeg()) // 1000} kB JPEG each, {a.seconds:g} s per row, clients in "
              f"{a.workers} processes, {os.cpu_count()} CPUs (load {os.getloadavg()[0]:.1f}, "
              f"fd limit {fds})")
        print_header()
        for i, n in enumerate(a.clients):
            for g in gws if i % 2 == 0 else gws[::-1]:  # alternate: drifting load hits both
                print_row(g.row(a, n, f"{STREAM}-{i}"), f"  {g.label}" if a.baseline else "")
        if a.idle:
            for g in gws:
                idle_phase(g, a)
        print(f"load at the end {os.getloadavg()[0]:.1f}")
    finally:
        for g in gws:
            g.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
