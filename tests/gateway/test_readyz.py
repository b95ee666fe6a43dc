"""/readyz on the real broker says 503, with the reason, when the feed stops making progress —
its poll loop stuck in a hand-over, the loop not taking the batches, the feed thread gone —
and 200 again once it moves. The app is served in-process with the real Kafka feed."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest
from confluent_kafka import Message

from evi.settings import KafkaSettings
from evi.topics import Topics
from gateway.app import create_app
from gateway.fanout import Fanout
from gateway.settings import GatewaySettings
from tests.gateway.feed import Feeder
from tests.gateway.server import serve
from tests.helpers import wait_until

pytestmark = pytest.mark.kafka


def readyz(c: httpx.Client) -> tuple[int, str]:
    r = c.get("/readyz")
    return r.status_code, str(r.json()["status"])


def test_readyz_fails_while_the_feed_makes_no_progress(
    kafka: KafkaSettings, topics: Topics
) -> None:
    s = GatewaySettings(kafka=kafka, topics=topics.settings, probe_interval_s=0.3,
                        metadata_refresh_s=1, feed_stall_s=1, auth_required=False)
    feeder = Feeder(kafka, topics)
    app = create_app(s)
    with serve(app) as c:
        wait_until(lambda: readyz(c) == (200, "ready"), 20, "ready")
        f: Fanout = app.state.fanout
        seen: list[str] = []

        # 1. The feed thread is stuck handing a batch over (its poll loop stops turning).
        gate = threading.Event()
        hand_over = f.feed.on_batch

        def stuck(batch: list[Message]) -> None:
            gate.wait(30)
            hand_over(batch)

        f.feed.on_batch = stuck
        feeder.pair("cam1", 0)
        feeder.flush()
        wait_until(lambda: readyz(c)[0] == 503, 10, "503 while the poll loop is stuck")
        seen.append(readyz(c)[1])
        gate.set()
        f.feed.on_batch = hand_over
        wait_until(lambda: readyz(c) == (200, "ready"), 10, "ready again")

        # 2. The event loop takes no batch: it has records waiting and does not dispatch them.
        swallowed: list[Any] = []
        f.handover.take = swallowed.append  # type: ignore[method-assign,assignment]
        feeder.pair("cam1", 1)
        feeder.flush()
        wait_until(lambda: readyz(c)[0] == 503, 10, "503 while batches wait")
        seen.append(readyz(c)[1])
        del f.handover.take
        assert f.handover.loop is not None
        for batch in swallowed:  # handled for real now: their slots are given back
            f.handover.loop.call_soon_threadsafe(f.handover.take, batch)
        wait_until(lambda: readyz(c) == (200, "ready"), 10, "ready again")

        # 3. The feed thread is gone.
        f.feed.stop()
        wait_until(lambda: readyz(c)[0] == 503, 10, "503 without a feed thread")
        seen.append(readyz(c)[1])
    assert [w.split(" for ")[0] for w in seen] == [
        "kafka poll loop stalled", "records not dispatched", "kafka feed thread is not running"]
