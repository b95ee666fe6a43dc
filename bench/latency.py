"""Capture → browser latency on the dev stack, with a per-hop budget.

    .venv/bin/python bench/latency.py                          # 12 streams x 15 fps, 3 rounds
    .venv/bin/python bench/latency.py --streams 1 --seconds 10 --rounds 1 --presets new

Each round starts the dev stack as `evi dev` does (one `evi produce --samples N --fps F --loop`,
one `evi process --kind face --policy drop-stale`, one `evi gateway`) on its own topic prefix on
the broker at 127.0.0.1:9092, lets it settle, then measures for `--seconds`:

- a websocket client in its OWN process (this script with --client) subscribed to every stream
  stamps each result message on arrival: browser latency = arrival - the frame's capture time
  (`ts_ms`, set by the producer before it encodes); the clocks are this machine's one clock;
- an observer consumer (a thread here) reads the frames and results topics from their end and
  stamps each record on arrival, which splits the path into hops (below);
- the processor's /metrics give its inference time and micro-batch sizes.

Presets (settings passed to every child by environment, so the same code runs both):
`old` = the waits before issue 18 (producer linger 5 ms, results linger 20 ms, micro-batch
window 5 ms); `new` = the defaults now (a micro-batch goes as soon as a batch slot is free);
`timer5` / `window1` = new with faust's take_events timer at 5 / 1 ms;
`noflight` = new without quarantine's in-flight records. Presets
alternate within a run, so load drifts hit them alike.

Hops (each p50 / p99 over the frames the browser got, in ms):
  capture→produce     ts_ms → the frame record's CreateTime (encode + the Publisher's queue)
  producer+broker     CreateTime → the observer has the frame (producer linger, the broker's
                      append, a fetch)
  processor           the observer has the frame → the result's processed_ms: the processor's
                      fetch wait + micro-batch wait + queueing behind other frames + decode +
                      inference + postprocess; split into inference (the result's infer_ms)
                      and the rest
  results out         processed_ms → the observer has the result (results linger, broker, fetch)
  gateway+websocket   the observer has the result → the browser has it (the gateway's fetch,
                      pairing with its frame, fan-out and the websocket)
The observer's fetches stand in for the processor's and the gateway's (same broker, same
moment); a record is counted where it was first fetchable, so the hops add up to the total.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from confluent_kafka import OFFSET_END, Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from evi.kafka import ensure_topics, partitions_of
from evi.settings import KafkaSettings, TopicSettings
from evi.topics import Topics
from evi.wire import BadResult, decode_result, parse_frame

REPO = Path(__file__).resolve().parent.parent
KIND = "face"
# Settings every child gets by environment; `old` are the waits before issue 18.
PRESETS: dict[str, dict[str, str]] = {
    "old": {"EVI_PUBLISHER__LINGER_MS": "5", "EVI_LINGER_MS": "20", "EVI_BATCH_WITHIN_MS": "5"},
    "new": {},
    # new with faust's take_events timer instead of batches as a slot frees: 5 ms (the default
    # until 4 Dec 2026) and 1 ms.
    "timer5": {"EVI_BATCH_WITHIN_MS": "5"},
    "window1": {"EVI_BATCH_WITHIN_MS": "1"},
    # new without quarantine: no in-flight record (an acks=all write awaited before each micro-
    # batch runs), to price that wait and its CPU at live rates, where batches are a frame each.
    "noflight": {"EVI_QUARANTINE_DEATHS": "0"},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as r:
        return str(r.read().decode())


def wait_http(url: str, proc: subprocess.Popen[bytes], what: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            get(url)
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{what} did not become ready ({url})") from None
            time.sleep(0.3)


# --- the browser stand-in, in its own process ------------------------------------------------


async def _client(url: str, seconds: float) -> list[list[Any]]:
    from websockets.asyncio.client import connect

    from gateway.protocol import unpack_message

    rows: list[list[Any]] = []
    async with connect(url, max_size=8 << 20) as ws:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                raw = await asyncio.wait_for(ws.recv(), left)
            except TimeoutError:
                break
            now_ms = time.time() * 1000
            if not isinstance(raw, bytes):
                continue
            header, jpeg = unpack_message(raw)
            if header.get("type") == "result":
                rows.append([header["stream"], header["seq"], header["ts_ms"],
                             header["processed_ms"], header["infer_ms"], now_ms, bool(jpeg)])
    return rows


def client_main(url: str, seconds: float, out: Path) -> int:
    rows = asyncio.run(_client(url, seconds))
    out.write_text("\n".join(json.dumps(r) for r in rows))
    return 0


# --- the observer: where each record first became fetchable -----------------------------------


@dataclass
class Seen:
    frame_ct: dict[tuple[str, int], tuple[int, float]] = field(default_factory=dict)
    result_at: dict[tuple[str, int], float] = field(default_factory=dict)
    frames_first: int = 0  # frames fetched before their result
    paired: int = 0


def observe(kafka: KafkaSettings, topics: Topics, stop: threading.Event, seen: Seen) -> None:
    c = Consumer(kafka.client_config() | {
        "group.id": f"latency-bench-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False,
        "fetch.wait.max.ms": 100, "check.crcs": False,
    })  # fmt: skip
    parts = []
    for t in (topics.frames(KIND), topics.results(KIND)):
        parts += [TopicPartition(t, p, OFFSET_END) for p in range(partitions_of(kafka, t))]
    c.assign(parts)
    results_topic = topics.results(KIND)
    try:
        while not stop.is_set():
            # consume() would wait its whole timeout for a full batch: poll() returns at once.
            first = c.poll(0.1)
            if first is None:
                continue
            now_ms = time.time() * 1000
            for m in [first, *c.consume(500, 0)]:
                if m.error() is not None:
                    continue
                if m.topic() == results_topic:
                    try:
                        r = decode_result(m.value())
                    except BadResult:
                        continue
                    key = (r.stream, r.seq)
                    seen.result_at[key] = now_ms
                    seen.paired += 1
                    seen.frames_first += key in seen.frame_ct
                else:
                    meta = parse_frame(m.key(), m.value(), m.headers())
                    key = (meta.stream, meta.seq)
                    seen.frame_ct[key] = (m.timestamp()[1], now_ms)
    finally:
        c.close()


# --- one round: the stack up, measured, down ------------------------------------------------


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads) so far, from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def broker_pid() -> int | None:
    """The local Kafka broker's JVM, to count its CPU beside ours (None when not found)."""
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if b"kafka.Kafka" in (d / "cmdline").read_bytes():
                    return int(d.name)
            except OSError:
                continue
    return None


def metric_sums(text: str, name: str) -> tuple[float, float]:
    """(sum, count) of a histogram in a Prometheus text page, over its label sets."""
    total = count = 0.0
    for line in text.splitlines():
        if line.startswith(name + "_sum"):
            total += float(line.rsplit(" ", 1)[1])
        elif line.startswith(name + "_count"):
            count += float(line.rsplit(" ", 1)[1])
    return total, count


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


def run_round(a: argparse.Namespace, preset: str, log_dir: Path) -> dict[str, Any]:
    kafka = KafkaSettings(bootstrap_servers=a.bootstrap_servers)
    prefix = f"lat{uuid.uuid4().hex[:8]}"
    topics = Topics(TopicSettings(prefix=prefix))
    ensure_topics(kafka, topics.specs([KIND]))
    env = {**os.environ, "EVI_LOG_LEVEL": "WARNING", **PRESETS[preset]}
    common = ["--bootstrap-servers", a.bootstrap_servers, "--topic-prefix", prefix]
    web, port = free_port(), free_port()
    procs: list[subprocess.Popen[bytes]] = []
    log_dir.mkdir(parents=True, exist_ok=True)

    named: dict[str, int] = {}
    if (bpid := broker_pid()) is not None:
        named["broker"] = bpid

    def start(name: str, *args: str) -> subprocess.Popen[bytes]:
        log = open(log_dir / f"{preset}-{name}.log", "wb")  # noqa: SIM115 - the child owns it
        p = subprocess.Popen([sys.executable, "-m", "evi.cli", *args, *common], cwd=REPO,
                             env=env, stdout=log, stderr=subprocess.STDOUT,
                             start_new_session=True)  # fmt: skip
        log.close()
        procs.append(p)
        named[name] = p.pid
        return p

    stop = threading.Event()
    seen = Seen()
    watcher: threading.Thread | None = None
    try:
        proc = start("processor", "process", "--kind", KIND, "--web-port", str(web),
                     "--policy", "drop-stale")
        gw = start("gateway", "gateway", "--port", str(port), "--no-auth", "--metrics-port", "0",
                   "--kind", KIND)
        wait_http(f"http://127.0.0.1:{port}/readyz", gw, "gateway", 60)
        wait_http(f"http://127.0.0.1:{web}/readyz", proc, "processor", 120)
        start("producer", "produce", "--samples", str(a.streams), "--fps", str(a.fps), "--loop",
              "--kind", KIND, "--metrics-port", "0")
        watcher = threading.Thread(target=observe, args=(kafka, topics, stop, seen), daemon=True)
        watcher.start()
        time.sleep(a.warmup)
        ids = ",".join(f"sample-{i}" for i in range(1, a.streams + 1))
        out = log_dir / f"{preset}-client.jsonl"
        metrics0 = get(f"http://127.0.0.1:{web}/metrics")
        cpu0 = {k: cpu_s(v) for k, v in named.items()}
        own0, kids0 = time.process_time(), resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.monotonic()
        subprocess.run(
            [sys.executable, __file__, "--client", f"ws://127.0.0.1:{port}/ws/streams?ids={ids}",
             "--seconds", str(a.seconds), "--out", str(out)],
            cwd=REPO, timeout=a.seconds + 30, check=True)  # fmt: skip
        wall = time.monotonic() - t0
        kids1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = {k: (cpu_s(v) - cpu0[k]) / wall for k, v in named.items()}
        cpu["client"] = (kids1.ru_utime + kids1.ru_stime - kids0.ru_utime - kids0.ru_stime) / wall
        cpu["observer"] = (time.process_time() - own0) / wall
        metrics1 = get(f"http://127.0.0.1:{web}/metrics")
        time.sleep(0.5)  # the observer's last records
    finally:
        stop.set()
        if watcher is not None:
            watcher.join(5)
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        AdminClient(kafka.client_config()).delete_topics(
            [s.name for s in topics.specs([KIND])], operation_timeout=30)
    rows = [json.loads(line) for line in out.read_text().splitlines() if line]
    return summarise(rows, seen, metrics0, metrics1, a) | {"cpu": cpu}


def summarise(rows: list[list[Any]], seen: Seen, m0: str, m1: str,
              a: argparse.Namespace) -> dict[str, Any]:  # fmt: skip
    hops: dict[str, list[float]] = {k: [] for k in HOPS}
    total: list[float] = []
    infer: list[float] = []
    images = 0
    for stream, seq, ts, processed, infer_ms, recv, image in rows:
        total.append(recv - ts)
        infer.append(infer_ms)
        images += image
        frame, res = seen.frame_ct.get((stream, seq)), seen.result_at.get((stream, seq))
        if frame is None or res is None:
            continue
        ct, frame_at = frame
        hops["capture→produce"].append(ct - ts)
        hops["producer+broker"].append(frame_at - ct)
        hops["processor: queue+waits+decode+post"].append(processed - frame_at - infer_ms)
        hops["processor: inference"].append(infer_ms)
        hops["results out"].append(res - processed)
        hops["gateway+websocket"].append(recv - res)
    s0, n0 = metric_sums(m0, "evi_processor_inference_seconds")
    s1, n1 = metric_sums(m1, "evi_processor_inference_seconds")
    b0, c0 = metric_sums(m0, "evi_processor_batch_frames")
    b1, c1 = metric_sums(m1, "evi_processor_batch_frames")
    want = a.streams * a.fps * a.seconds
    return {
        "n": len(rows), "want": want, "images": images, "total": total, "hops": hops,
        "infer_p50": pct(infer, 0.5),
        "infer_metric_ms": 1000 * (s1 - s0) / (n1 - n0) if n1 > n0 else float("nan"),
        "batch_mean": (b1 - b0) / (c1 - c0) if c1 > c0 else float("nan"),
        "frames_first": seen.frames_first / max(1, seen.paired),
    }


HOPS = ["capture→produce", "producer+broker", "processor: queue+waits+decode+post",
        "processor: inference", "results out", "gateway+websocket"]


def print_round(preset: str, r: dict[str, Any], load: float) -> None:
    p50, p99 = pct(r["total"], 0.5), pct(r["total"], 0.99)
    target = r["infer_p50"] + 15
    print(f"\n{preset}: {r['n']} results in the browser ({r['n'] / r['want']:.0%} of frames "
          f"captured, {r['images'] / max(1, r['n']):.0%} with their picture), load {load:.2f}; "
          f"capture→browser p50 {p50:.1f} ms (target ≤ inference p50 {r['infer_p50']:.1f} + 15 "
          f"= {target:.1f}: {'met' if p50 <= target else 'NOT met'}), p99 {p99:.1f} ms "
          f"(p99/p50 {p99 / p50:.2f}, target ≤ 3: {'met' if p99 <= 3 * p50 else 'NOT met'}); "
          f"inference {r['infer_metric_ms']:.2f} ms mean (processor metrics), micro-batch "
          f"{r['batch_mean']:.2f} frames mean; frame at the gateway before its result "
          f"{r['frames_first']:.1%}")
    print("| hop | p50 ms | p99 ms |")
    print("|---|---:|---:|")
    for name in HOPS:
        xs = r["hops"][name]
        print(f"| {name} | {pct(xs, 0.5):.1f} | {pct(xs, 0.99):.1f} |")
    print(f"| **capture→browser** | **{p50:.1f}** | **{p99:.1f}** |")
    cpu = r["cpu"]
    print("CPU while measured, in cores (of " + str(os.cpu_count()) + "): " + ", ".join(
        f"{k} {v:.2f}" for k, v in cpu.items()) + f"; sum {sum(cpu.values()):.2f}")


def main(argv: Iterable[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--streams", type=int, default=12)
    ap.add_argument("--fps", type=float, default=15.0)
    ap.add_argument("--seconds", type=float, default=20.0, help="measured seconds per round")
    ap.add_argument("--warmup", type=float, default=8.0, help="seconds before measuring")
    ap.add_argument("--rounds", type=int, default=3, help="rounds per preset (alternating)")
    ap.add_argument("--presets", nargs="+", choices=list(PRESETS), default=["old", "new"])
    ap.add_argument("--bootstrap-servers", default="127.0.0.1:9092")
    ap.add_argument("--logs", type=Path, default=Path("/tmp/evi-latency-bench"))
    ap.add_argument("--client", help=argparse.SUPPRESS)  # the websocket client's own process
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    a = ap.parse_args(list(argv) if argv is not None else None)
    if a.client:
        return client_main(a.client, a.seconds, a.out)
    # SIGTERM unwinds like Ctrl-C, so a round's `finally` stops its children and topics.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    print(f"{a.streams} streams x {a.fps:g} fps, {a.seconds:g} s measured per round, "
          f"{os.cpu_count()} CPUs, load at start {os.getloadavg()[0]:.2f}")
    summary: dict[str, list[tuple[float, float, float]]] = {p: [] for p in a.presets}
    for i in range(a.rounds):
        for preset in a.presets:
            r = run_round(a, preset, a.logs / f"round{i + 1}")
            print_round(preset, r, os.getloadavg()[0])
            summary[preset].append((pct(r["total"], 0.5), pct(r["total"], 0.99), r["infer_p50"]))
    print("\n| preset | capture→browser p50 ms (runs) | p99 ms (runs) | inference p50 ms |")
    print("|---|---|---|---:|")
    for preset, runs in summary.items():
        print(f"| {preset} | {' '.join(f'{x[0]:.1f}' for x in runs)} | "
              f"{' '.join(f'{x[1]:.1f}' for x in runs)} | "
              f"{statistics.median(x[2] for x in runs):.1f} |")
    print(f"load at end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
