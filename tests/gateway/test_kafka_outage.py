"""Kafka going away and coming back does not kill the gateway: /readyz goes 503 then 200, the
websocket clients stay connected (told by `status` messages), the dashboard shows its Kafka
banner and takes it away again, and results flow again after.

The shared broker must never be stopped, so this test starts a private one (same jars, its own
ports and data under the test's tmp dir) and stops and starts only that."""

from __future__ import annotations

import contextlib
import os
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from evi.cli import KAFKA_SCRIPT
from evi.kafka import ensure_topics
from evi.settings import REPO_ROOT, KafkaSettings, TopicSettings
from evi.topics import Topics
from tests.e2e.browser import chromium_page
from tests.gateway.feed import Feeder
from tests.gateway.gw import gateway
from tests.gateway.wsclient import ReconnectingClient
from tests.helpers import free_port, wait_until

pytestmark = [pytest.mark.kafka, pytest.mark.e2e]


@contextlib.contextmanager
def private_broker(root: Path) -> Iterator[tuple[KafkaSettings, Callable[[str], None]]]:
    shared = Path(os.environ.get("EVI_CACHE_DIR", REPO_ROOT / ".cache")) / "kafka" / "libs"
    if not (shared / ".pom.sha256").exists():
        pytest.fail(f"Kafka jars missing at {shared}: run `deploy/kafka/kafka.sh fetch` first")
    (root / "kafka").mkdir(parents=True)
    (root / "kafka" / "libs").symlink_to(shared)
    port, controller = free_port(), free_port()
    assert port != 9092 and root.resolve() != (REPO_ROOT / ".cache").resolve()
    env = {**os.environ, "EVI_CACHE_DIR": str(root), "EVI_KAFKA_PORT": str(port),
           "EVI_KAFKA_CONTROLLER_PORT": str(controller), "EVI_KAFKA_START_TIMEOUT": "90",
           "EVI_KAFKA_HEAP_OPTS": "-Xms128m -Xmx256m"}

    def kafka_sh(action: str) -> None:
        subprocess.run(["bash", str(KAFKA_SCRIPT), action], env=env, check=True, timeout=150,
                       capture_output=True)

    kafka_sh("start")
    try:
        yield KafkaSettings(bootstrap_servers=f"127.0.0.1:{port}"), kafka_sh
    finally:
        kafka_sh("stop")


def status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=3) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return e.code


def test_gateway_survives_kafka_going_away(tmp_path: Path) -> None:
    with private_broker(tmp_path / "cache") as (kafka, kafka_sh):
        topics = Topics(TopicSettings(prefix="outage", frame_partitions=2))
        ensure_topics(kafka, topics.specs(["face"]))
        with gateway(kafka, topics, "outage-gateway") as gw, chromium_page() as page:
            client = ReconnectingClient(gw.ws("/ws/streams/cam1"))
            page.goto(gw.url("/"))
            try:
                feeder = Feeder(kafka, topics)
                for seq in range(3):
                    feeder.pair("cam1", seq)
                feeder.flush()
                wait_until(lambda: client.seqs("cam1") == [0, 1, 2], 15, "results before")

                kafka_sh("stop")
                wait_until(lambda: status(gw.url("/readyz")) == 503, 15, "readyz 503")
                assert status(gw.url("/healthz")) == 200
                assert gw.get("/api/stats")["kafka"] is False
                wait_until(lambda: client.kafka == [True, False], 5, "clients told")
                page.wait_for_function("() => document.body.dataset.banner === 'kafka'",
                                       timeout=10_000)
                assert "Kafka is unreachable" in page.locator("#banner").inner_text()

                kafka_sh("start")
                wait_until(lambda: status(gw.url("/readyz")) == 200, 60, "readyz 200 again")
                wait_until(lambda: client.kafka == [True, False, True], 5, "clients told")
                page.wait_for_function("() => document.body.dataset.banner === ''",
                                       timeout=10_000)
                for seq in range(3, 6):
                    feeder.pair("cam1", seq)
                feeder.flush()
                wait_until(lambda: client.seqs("cam1") == list(range(6)), 30, "results after")
                assert client.connects == 1, "the websocket stayed open all along"
                assert gw.get("/api/streams")[0]["stats"]["results_seen"] == 6
            finally:
                client.close()
