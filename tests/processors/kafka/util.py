"""Helpers for the processor tests on the real broker: frames in, results out, group state, metrics.
Every loop here is bounded in records and time."""

from __future__ import annotations

import contextlib
import functools
import subprocess
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import simplejpeg
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from prometheus_client.parser import text_string_to_metric_families

from evi.settings import KafkaSettings
from evi.topics import Topics
from evi.wire import FrameMeta, Result, decode_result, frame_headers
from producers.sample import SampleClip
from tests.helpers import REPO, common, consume_all, evi_process, header_pairs, log_tail, wait_until

W, H = 640, 480


@functools.cache
def jpeg(i: int = 0, w: int = W, h: int = H) -> bytes:
    """Frame i of the sample clip (a face unless i % 10 == 9), JPEG q80."""
    image = SampleClip(width=w, height=h, frames=max(i + 1, 10)).frame(i)
    data: bytes = simplejpeg.encode_jpeg(np.ascontiguousarray(image), 80, "BGR")
    return data


@dataclass(frozen=True)
class Sent:
    stream: str
    seq: int
    partition: int
    offset: int
    ts_ms: int


def producer(kafka: KafkaSettings) -> Producer:
    # Idempotence keeps each partition in send order even when the first batch is retried (a topic
    # created a moment ago has no leader yet).
    return Producer(kafka.client_config() | {
        "message.max.bytes": 10 << 20, "linger.ms": 5, "enable.idempotence": True,
    })


def produce(
    kafka: KafkaSettings, topic: str, streams: Sequence[str], seqs: range, *,
    partitions: int, ts_ms: int | None = None, fps: float = 0.0,
) -> list[Sent]:  # fmt: skip
    """Frames `seqs` of each stream, stream i on partition i % partitions, seq-major order.
    `ts_ms` pins capture times (seq s at ts_ms + s*100); `fps` > 0 paces rounds in real time."""
    p = producer(kafka)
    sent: list[Sent] = []
    errors: list[object] = []

    def report(meta: FrameMeta, err: object, msg: Any) -> None:  # never raises: librdkafka's
        if err is not None:  # callbacks mangle exceptions (and reports carry no headers)
            errors.append(err)
        else:
            sent.append(Sent(meta.stream, meta.seq, msg.partition(), msg.offset(), meta.ts_ms))

    for seq in seqs:
        t0 = time.monotonic()
        for i, stream in enumerate(streams):
            ts = ts_ms + seq * 100 if ts_ms is not None else int(time.time() * 1000)
            meta = FrameMeta(stream, seq, ts, W, H, producer="test")
            p.produce(topic, jpeg(seq % 10), stream.encode(), partition=i % partitions,
                      headers=list(frame_headers(meta)), timestamp=ts,
                      on_delivery=functools.partial(report, meta))
        p.poll(0)
        if fps:
            time.sleep(max(0.0, 1 / fps - (time.monotonic() - t0)))
    assert p.flush(30) == 0 and not errors, errors[:3]
    return sent


Rec = tuple[int, int, bytes, list[tuple[str, bytes]]]


def read(kafka: KafkaSettings, topic: str, timeout: float = 20.0) -> list[Rec]:
    """(partition, offset, value, headers) of every record now in `topic`, partition order."""
    return [(m.partition() or 0, m.offset() or 0, bytes(m.value() or b""),
             [(k, v or b"") for k, v in header_pairs(m)])
            for m in consume_all(kafka, topic, timeout)]  # fmt: skip


def results(kafka: KafkaSettings, topic: str) -> list[Result]:
    """Every result now in the results topic, each partition in order."""
    return [decode_result(value) for _, _, value, _ in read(kafka, topic)]


def wait_results(
    kafka: KafkaSettings, topics: Topics, want: set[tuple[str, int]], timeout: float,
    logs: Sequence[str] = (),
) -> list[Result]:  # fmt: skip
    """Poll the results topic until every (stream, seq) in `want` has a result."""
    got: list[Result] = []

    def complete() -> bool:
        nonlocal got
        got = results(kafka, topics.results("face"))
        return want <= {(r.stream, r.seq) for r in got}

    try:
        wait_until(complete, timeout, "a result for every frame", step=1.0)
    except TimeoutError:
        missing = sorted(want - {(r.stream, r.seq) for r in got})
        tails = "\n".join(f"--- {name}\n{log_tail(name)}" for name in logs)
        msg = f"{len(missing)} frames without a result, e.g. {missing[:5]}\n{tails}"
        raise AssertionError(msg) from None
    return got


def duplicates(got: Sequence[Result]) -> int:
    return sum(n - 1 for n in Counter((r.stream, r.seq) for r in got).values())


def in_order(got: Sequence[Result]) -> bool:
    """Per stream, each result's seq follows the previous one or repeats an earlier one (replay)."""
    best: dict[str, int] = {}
    for r in got:
        if r.seq > best.get(r.stream, -1) + 1:
            return False
        best[r.stream] = max(best.get(r.stream, -1), r.seq)
    return True


def assignment(kafka: KafkaSettings, group: str) -> list[set[int]]:
    """Partitions of each member of `group` (AdminClient describe_consumer_groups)."""
    admin = AdminClient(kafka.client_config())
    desc = admin.describe_consumer_groups([group])[group].result(timeout=10)
    return [{tp.partition for tp in m.assignment.topic_partitions} for m in desc.members]


def describe(kafka: KafkaSettings, group: str) -> dict[int, tuple[int | None, int, int | None]]:
    """Kafka's own view: `bin/kafka-consumer-groups --describe`, partition → (current, end, lag)."""
    out = subprocess.run(
        [str(REPO / "bin" / "kafka-consumer-groups"), "--bootstrap-server",
         kafka.bootstrap_servers, "--describe", "--group", group],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    rows: dict[int, tuple[int | None, int, int | None]] = {}
    for line in out.splitlines():
        f = line.split()
        if len(f) >= 6 and f[0] == group and f[2].isdigit():
            rows[int(f[2])] = (_num(f[3]), int(f[4]), _num(f[5]))
    return rows


def _num(v: str) -> int | None:
    return None if v == "-" else int(v)


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """/metrics as {(name, sorted labels): value}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def status(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=3) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)
    except OSError:
        return 0


@contextlib.contextmanager
def processor(
    name: str, kafka: KafkaSettings, topics: Topics, port: int, *args: str,
    env: dict[str, str] | None = None, faulty: bool = False, wait_web: bool = True,
) -> Iterator[subprocess.Popen[bytes]]:  # fmt: skip
    """`evi process --kind face` as a child process, waited for until its web server answers
    (unless not `wait_web`); `faulty` runs it with tests/processors/faulty_worker.py's faults."""
    argv = ("--kind", "face", "--web-port", str(port), *common(kafka, topics.prefix), *args)
    with evi_process(
        name, *(argv if faulty else ("process", *argv)), env=env,
        module="tests.processors.faulty_worker" if faulty else "evi.cli",
    ) as proc:  # fmt: skip
        if wait_web:
            wait_until(lambda: status(port, "/healthz") != 0 or proc.poll() is not None, 90,
                       f"{name} web server")  # fmt: skip
            assert proc.poll() is None, log_tail(name)
        yield proc
