"""Test helpers: run evi services as real child processes and wait for them."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from evi.kafka import admin, partitions_of
from evi.kafka import watermarks as evi_watermarks
from evi.settings import KafkaSettings

REPO = Path(__file__).resolve().parent.parent
LOGS = REPO / "test-artifacts" / "logs"


def common(kafka: KafkaSettings, prefix: str) -> list[str]:
    """The connection flags every evi command takes."""
    return ["--bootstrap-servers", kafka.bootstrap_servers, "--topic-prefix", prefix]


def delete_topics_with_prefix(kafka: KafkaSettings, prefix: str) -> None:
    """Keep the shared broker small as the suite goes on (hundreds of tests, a prefix each)."""
    client = admin(kafka)
    names = [n for n in client.list_topics(timeout=10).topics if n.startswith(f"{prefix}.")]
    if names:
        for fut in client.delete_topics(names, operation_timeout=30).values():
            fut.result()


SHARED_BROKER_PORT = 9092  # kafka.sh's
_HANDED_OUT: set[int] = set()


def _ephemeral_range() -> tuple[int, int]:
    try:
        lo, hi = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(lo), int(hi)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def free_port() -> int:
    """A port nothing listens on, for a child to bind (see free_ports)."""
    return free_ports(1)


def free_ports(n: int) -> int:
    """A first port p with p..p+n-1 free on loopback, none handed out before in this run.

    Not bind(0)'s pick: that comes from the kernel's ephemeral range, where any client's outgoing
    connection (a Kafka client's, say) can take it between our check and the child's bind; a
    gateway failed to start with EADDRINUSE that way, and a stopped broker could not restart.
    Ports below the range are only ever taken by an explicit bind."""
    lo, _ = _ephemeral_range()
    first, last = (20000, lo - n) if lo > 21000 else (61000, 65536 - n)
    for _ in range(500):
        base = random.randint(first, last)
        wanted = set(range(base, base + n))
        if wanted & _HANDED_OUT or SHARED_BROKER_PORT in wanted:
            continue
        try:
            with contextlib.ExitStack() as stack:
                for port in wanted:
                    stack.enter_context(socket.socket()).bind(("127.0.0.1", port))
        except OSError:
            continue
        _HANDED_OUT.update(wanted)
        return base
    raise RuntimeError(f"no {n} free consecutive ports in {first}-{last}")


def wait_until(check: Callable[[], bool], timeout: float, what: str, step: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(step)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return bool(r.status == 200)
    except OSError:
        return False


@contextlib.contextmanager
def evi_process(
    name: str, *args: str, env: dict[str, str] | None = None, module: str = "evi.cli"
) -> Iterator[subprocess.Popen[bytes]]:
    """Run `evi <args>` as a child process, log to test-artifacts/logs/<name>.log, stop it after.
    `module` runs another entry point with the same arguments (a test wrapper)."""
    LOGS.mkdir(parents=True, exist_ok=True)
    log = open(LOGS / f"{name}.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", module, *args],
        cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        log.close()


def log_tail(name: str, lines: int = 40) -> str:
    path = LOGS / f"{name}.log"
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def watermarks(c: Consumer, topic: str, p: int) -> tuple[int, int]:
    """Low and high offsets; a topic created a moment ago may not have its leader yet."""
    for _ in range(50):
        try:
            low, high = evi_watermarks(c, topic, [p])[p]
            return int(low), int(high)
        except KafkaException:
            time.sleep(0.2)
    raise TimeoutError(f"no leader for {topic}[{p}] in 10 s")


def consume_all(kafka: KafkaSettings, topic: str, timeout: float = 20.0,
                limit: int | None = None, require_all: bool = False) -> list[Message]:  # fmt: skip
    """Every record now in `topic` (from each partition's start up to its end offset when
    called, at most `limit`), in partition and offset order. Partly read after `timeout`: what
    was read, or AssertionError with `require_all`."""
    c = Consumer(kafka.client_config() | {"group.id": f"t-read-{uuid.uuid4().hex[:8]}",
                                          "enable.auto.commit": False})  # fmt: skip
    try:
        ends: dict[int, tuple[int, int]] = {}
        for p in range(partitions_of(kafka, topic)):
            low, high = watermarks(c, topic, p)
            if high > low:
                ends[p] = (low, high)
        c.assign([TopicPartition(topic, p, low) for p, (low, _) in ends.items()])
        out: list[Message] = []
        done: set[int] = set()
        deadline = time.monotonic() + timeout
        while (len(done) < len(ends) and (limit is None or len(out) < limit)
               and time.monotonic() < deadline):  # fmt: skip
            m = c.poll(0.5)
            if m is None or m.error():
                continue
            out.append(m)
            part, offset = m.partition() or 0, m.offset() or 0
            if offset + 1 >= ends[part][1]:
                done.add(part)
        if require_all:
            assert len(done) == len(ends), f"read {topic} only partly in {timeout}s"
        return sorted(out, key=lambda m: (m.partition() or 0, m.offset() or 0))
    finally:
        c.close()


def header_pairs(m: Message) -> list[tuple[str, bytes | None]]:
    """A consumed record's headers as (name, bytes) pairs; a null value stays None."""
    raw = m.headers() or []
    assert isinstance(raw, list)  # a consumer's headers are a list of pairs
    return [(k, v.encode() if isinstance(v, str) else v) for k, v in raw]
