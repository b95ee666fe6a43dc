"""Kafka going away and coming back does not kill the gateway: /readyz goes 503 then 200, the
websocket clients stay connected (told by `status` messages), the dashboard shows its Kafka
banner and takes it away again, and results flow again after.

The shared broker must never be stopped, so this test starts a private one (same jars, its own
ports and data under the test's tmp dir) and stops and starts only that."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

import pytest

from evi.kafka import ensure_topics
from evi.settings import TopicSettings
from evi.topics import Topics
from tests.e2e.browser import chromium_page
from tests.gateway.feed import Feeder
from tests.gateway.gw import bearer, gateway
from tests.gateway.wsclient import ReconnectingClient
from tests.helpers import wait_until
from tests.private_broker import private_broker

pytestmark = [pytest.mark.kafka, pytest.mark.e2e]


def status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=3) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return e.code


def test_gateway_survives_kafka_going_away(tmp_path: Path) -> None:
    with private_broker(tmp_path / "cache") as broker:
        kafka = broker.kafka
        topics = Topics(TopicSettings(prefix="outage", frame_partitions=2))
        ensure_topics(kafka, topics.specs(["face"]))
        with gateway(kafka, topics, "outage-gateway") as gw, chromium_page() as page:
            client = ReconnectingClient(gw.ws("/ws/streams/cam1"), bearer())
            page.goto(gw.dashboard())
            try:
                feeder = Feeder(kafka, topics)
                for seq in range(3):
                    feeder.pair("cam1", seq)
                feeder.flush()
                wait_until(lambda: client.seqs("cam1") == [0, 1, 2], 15, "results before")

                broker.stop()
                wait_until(lambda: status(gw.url("/readyz")) == 503, 15, "readyz 503")
                assert status(gw.url("/healthz")) == 200
                assert gw.get("/api/stats")["kafka"] is False
                wait_until(lambda: client.kafka == [True, False], 5, "clients told")
                page.wait_for_function("() => document.body.dataset.banner === 'kafka'",
                                       timeout=10_000)
                assert "Kafka is unreachable" in page.locator("#banner").inner_text()

                broker.start()
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
