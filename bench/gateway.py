"""Gateway fan-out: messages/s delivered and delivery latency with 1, 50 and 200 websocket clients.

    .venv/bin/python bench/gateway.py                      # real broker on 127.0.0.1:9092
    .venv/bin/python bench/gateway.py --clients 1 50 --rate 20 --seconds 5

One `evi gateway` child process (its own topic prefix) serves N clients, all subscribed to one
stream, in this process (asyncio websockets). A feeder thread publishes frame + result pairs at a
fixed rate (a real 640x480 JPEG of the sample clip, ~35 kB, and a result with one detection)
for a fixed time per row. Latency = client receive time - the result's `processed_ms`, which the
feeder sets just before producing: Kafka produce → gateway consume → pairing → websocket.
Offered = rate x clients; delivered counts result messages with their JPEG received by all
clients during the row. gw CPU is the gateway process's user+system time over the row's wall
time (100 % = one core); bench CPU the same for this process (clients and feeder), which shares
the machine. Bounded: every row runs `--seconds` plus at most ~8 s of set-up and drain.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
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
from websockets.asyncio.client import connect

from evi.kafka import ensure_topics
from evi.settings import KafkaSettings, TopicSettings
from evi.topics import Topics
from evi.wire import Detection, FrameMeta, Result, encode_result, frame_headers
from gateway.protocol import unpack_message
from producers.sample import SampleClip

REPO = Path(__file__).resolve().parent.parent
STREAM = "bench"


def sample_jpeg() -> bytes:
    ok, buf = cv2.imencode(".jpg", SampleClip(640, 480, 30).frame(10),
                           [cv2.IMWRITE_JPEG_QUALITY, 80])
    assert ok
    return buf.tobytes()


def feed(kafka: KafkaSettings, topics: Topics, rate: float, seconds: float,
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
        meta = FrameMeta(STREAM, n, now, 640, 480, producer="bench")
        headers: list[tuple[str, str | bytes | None]] = list(frame_headers(meta))
        p.produce(topics.frames("face"), jpeg, STREAM.encode(), headers=headers)
        r = Result(STREAM, n, now, int(time.time() * 1000), "face", "bench", det, 1.0, 640, 480)
        p.produce(topics.results("face"), encode_result(r), STREAM.encode())
        p.poll(0)
        n += 1
    p.flush(10)
    return n


class Row:
    def __init__(self, first_seq: int) -> None:
        self.first_seq = first_seq  # results before it are the warm-up
        self.latencies: list[float] = []
        self.delivered = 0
        self.last_seq: dict[int, int] = {}


async def client(i: int, url: str, row: Row, ready: asyncio.Event, done: asyncio.Event) -> None:
    async with connect(url, max_size=8 << 20) as ws:
        await ws.recv()  # hello
        ready.set()
        while not done.is_set():
            try:
                raw = await asyncio.wait_for(ws.recv(), 0.5)
            except TimeoutError:
                continue
            assert isinstance(raw, bytes)
            header, jpeg = unpack_message(raw)
            if header["type"] == "result" and jpeg and header["seq"] >= row.first_seq:
                row.delivered += 1
                row.last_seq[i] = header["seq"]
                row.latencies.append(time.time() * 1000 - header["processed_ms"])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def get_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=5) as r:
        data: dict[str, Any] = json.load(r)
        return data


async def run_row(port: int, pid: int, kafka: KafkaSettings, topics: Topics, n_clients: int,
                  rate: float, seconds: float) -> dict[str, float]:
    url = f"ws://127.0.0.1:{port}/ws/streams/{STREAM}"
    warm = 1.0  # seconds of results not counted: clients and gateway settle
    row, done = Row(first_seq=int(warm * rate)), asyncio.Event()
    readies = [asyncio.Event() for _ in range(n_clients)]
    tasks = [asyncio.create_task(client(i, url, row, r, done)) for i, r in enumerate(readies)]
    await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 30)
    stats0 = get_json(f"http://127.0.0.1:{port}/api/stats")
    stop = threading.Event()
    feeder = asyncio.get_running_loop().run_in_executor(
        None, feed, kafka, topics, rate, warm + seconds, stop)
    await asyncio.sleep(warm)
    cpu0, own0, t0 = cpu_seconds(pid), time.process_time(), time.monotonic()
    sent = await feeder
    for _ in range(100):  # the last messages in flight, at most 5 s more
        if all(row.last_seq.get(i) == sent - 1 for i in range(n_clients)):
            break
        await asyncio.sleep(0.05)
    wall = time.monotonic() - t0
    cpu, own = (cpu_seconds(pid) - cpu0) / wall, (time.process_time() - own0) / wall
    done.set()
    await asyncio.gather(*tasks)
    stats1 = get_json(f"http://127.0.0.1:{port}/api/stats")
    lat = sorted(row.latencies) or [0.0]
    offered = (sent - row.first_seq) * n_clients
    return {
        "clients": n_clients,
        "offered_per_s": rate * n_clients,
        "delivered_per_s": row.delivered / seconds,
        "delivered_pct": 100 * row.delivered / max(1.0, offered),
        "p50_ms": statistics.median(lat),
        "p99_ms": lat[min(len(lat) - 1, int(0.99 * len(lat)))],
        "drops": float(int(stats1["dropped_to_clients"]) - int(stats0["dropped_to_clients"])),
        "cpu_pct": 100 * cpu,
        "client_cpu_pct": 100 * own,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bootstrap-servers", default="127.0.0.1:9092")
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 50, 200])
    ap.add_argument("--rate", type=float, default=10.0, help="results per second (one stream)")
    ap.add_argument("--seconds", type=float, default=10.0, help="measured seconds per row")
    a = ap.parse_args()
    kafka = KafkaSettings(bootstrap_servers=a.bootstrap_servers)
    topics = Topics(TopicSettings(prefix=f"bench{uuid.uuid4().hex[:8]}", frame_partitions=1))
    ensure_topics(kafka, topics.specs(["face"]))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    env = {**os.environ, "EVI_CLIENT_QUEUE": "64", "EVI_LOG_LEVEL": "WARNING"}
    gw = subprocess.Popen(
        [sys.executable, "-m", "evi.cli", "gateway", "--port", str(port), "--bootstrap-servers",
         a.bootstrap_servers, "--topic-prefix", topics.prefix, "--no-auth", "--metrics-port",
         "0"], cwd=REPO, env=env,
        stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                get_json(f"http://127.0.0.1:{port}/readyz")
                break
            except OSError:
                if time.monotonic() > deadline or gw.poll() is not None:
                    raise SystemExit("gateway did not become ready") from None
                time.sleep(0.3)
        print(f"gateway fan-out: 1 stream at {a.rate:g} results/s with a "
              f"{len(sample_jpeg()) // 1000} kB JPEG each, {a.seconds:g} s per row, "
              f"{os.cpu_count()} CPUs (load {os.getloadavg()[0]:.1f})")
        print(f"{'clients':>7} {'offered/s':>10} {'delivered/s':>12} {'delivered':>10} "
              f"{'p50 ms':>8} {'p99 ms':>8} {'drops':>6} {'gw CPU':>7} {'bench CPU':>9}")
        for n in a.clients:
            r = asyncio.run(run_row(port, gw.pid, kafka, topics, n, a.rate, a.seconds))
            print(f"{n:>7} {r['offered_per_s']:>10.0f} {r['delivered_per_s']:>12.0f} "
                  f"{r['delivered_pct']:>9.1f}% {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} "
                  f"{r['drops']:>6.0f} {r['cpu_pct']:>6.0f}% {r['client_cpu_pct']:>8.0f}%",
                  flush=True)
    finally:
        gw.terminate()
        gw.wait(20)
        names = [s.name for s in topics.specs(["face"])]
        admin = AdminClient(kafka.client_config())
        for fut in admin.delete_topics(names, operation_timeout=30).values():
            fut.result(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
