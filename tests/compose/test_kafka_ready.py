"""The Kafka container's health check (deploy/kafka/docker/kafka-ready), run here against the
dev broker: one ApiVersions round trip from bash, no JVM. It must say yes to a broker and no to
anything else listening, or to nothing."""

from __future__ import annotations

import socket
import subprocess
import threading
import time

import pytest

from evi.settings import KafkaSettings
from tests.helpers import REPO

PROBE = REPO / "deploy" / "kafka" / "docker" / "kafka-ready"


def probe(port: int) -> tuple[int, float]:
    t0 = time.monotonic()
    r = subprocess.run(["bash", str(PROBE), str(port)], capture_output=True, timeout=20)
    return r.returncode, time.monotonic() - t0


@pytest.mark.kafka
def test_a_broker_answers_the_probe(kafka: KafkaSettings) -> None:
    host, port = kafka.bootstrap_servers.split(",")[0].rsplit(":", 1)
    assert host in ("127.0.0.1", "localhost")
    code, took = probe(int(port))
    assert code == 0
    assert took < 2.0, f"{took:.2f} s: a JVM-free probe takes milliseconds"


def test_something_else_on_the_port_fails_the_probe() -> None:
    """An HTTP server (any non-Kafka answer) and a closed port both fail."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]

        def answer() -> None:
            conn, _ = server.accept()
            with conn:
                conn.recv(64)
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")

        t = threading.Thread(target=answer, daemon=True)
        t.start()
        assert probe(port)[0] != 0
        t.join(5)
    assert probe(port)[0] != 0, "nothing listens there now"
