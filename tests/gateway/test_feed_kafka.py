"""The gateway's feed on the real broker: every record is handed over once, whatever its value,
and a consumer replaced after a failure goes on where the failed one was."""

from __future__ import annotations

import threading
import time

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer

from evi.settings import KafkaSettings
from evi.topics import Topics
from gateway.feed import Feed
from gateway.settings import GatewaySettings
from tests.helpers import wait_until

pytestmark = pytest.mark.kafka

N = 300


def publish_paced(kafka: KafkaSettings, topics: Topics) -> None:
    """N results in batches of 10, 0.1 s apart: ~3 s of batches for the feed to fail among."""
    p = Producer(kafka.client_config())
    for i in range(N):
        p.produce(topics.results("face"), f"r{i}".encode(), f"s{i % 7}".encode())
        if i % 10 == 9:
            p.flush(10)
            time.sleep(0.1)
    assert p.flush(10) == 0


def assert_each_read_once_in_order(got: list[tuple[int, int, bytes]]) -> None:
    """Every record of publish_paced handed over once, each partition's in offset order."""
    assert sorted(v for _, _, v in got) == sorted(f"r{i}".encode() for i in range(N))
    for part in {p for p, _, _ in got}:
        offsets = [o for p, o, _ in got if p == part]
        assert offsets == list(range(len(offsets))), f"partition {part} read in order, once"


def test_a_replaced_feed_consumer_resumes_where_the_failed_one_stopped(
    kafka: KafkaSettings, topics: Topics
) -> None:
    got: list[tuple[int, int, bytes]] = []
    assigned = threading.Event()
    failures = 0
    calls = 0

    def on_batch(batch: list[Message]) -> None:
        nonlocal failures, calls
        calls += 1
        if calls in (2, 5):
            failures += 1  # a bug in the hand-over: the batch was not taken
            raise RuntimeError("hand-over failed")
        got.extend((m.partition() or 0, m.offset() or 0, m.value() or b"") for m in batch)

    s = GatewaySettings(kafka=kafka, topics=topics.settings, auth_required=False)
    feed = Feed(s, on_batch, lambda: None, assigned.set)
    feed.start()
    try:
        assert assigned.wait(30)
        publish_paced(kafka, topics)  # both failures fall in the middle
        wait_until(lambda: len(got) >= N, 60, f"{N} records read")
        time.sleep(1)  # anything read twice would come now
    finally:
        feed.stop()
    assert failures == 2 and feed.restarts == 2
    assert_each_read_once_in_order(got)


def test_a_consumer_whose_metadata_refresh_fails_is_replaced_and_nothing_is_lost(
    kafka: KafkaSettings, topics: Topics, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a broker restart a librdkafka client could stay disconnected for 30 s while a new
    one connected at once: a failed metadata refresh gives the client up, and its successor
    resumes at the handed-over offsets."""
    got: list[tuple[int, int, bytes]] = []
    assigned = threading.Event()
    refreshes = 0
    real = Feed._assign_new

    def assign_new(self: Feed, c: Consumer, since_ms: int | None) -> int:
        nonlocal refreshes
        if since_ms is not None:  # a refresh inside _poll, not a new client's first look
            refreshes += 1
            if refreshes in (2, 4):
                raise KafkaException(KafkaError(KafkaError._TRANSPORT, "broker transport failure"))
        return real(self, c, since_ms)

    monkeypatch.setattr(Feed, "_assign_new", assign_new)
    s = GatewaySettings(kafka=kafka, topics=topics.settings, auth_required=False,
                        metadata_refresh_s=0.5)
    feed = Feed(s, lambda b: got.extend((m.partition() or 0, m.offset() or 0, m.value() or b"")
                                        for m in b), lambda: None, assigned.set)
    feed.start()
    try:
        assert assigned.wait(30)
        publish_paced(kafka, topics)  # several refreshes, both failures in the middle
        wait_until(lambda: len(got) >= N and refreshes >= 4, 60, f"{N} records read")
        time.sleep(1)  # anything read twice would come now
    finally:
        feed.stop()
    assert feed.replaced_after_metadata_failure == 2
    assert_each_read_once_in_order(got)


def test_records_with_an_empty_or_null_value_after_a_pause_are_handed_over(
    kafka: KafkaSettings, topics: Topics
) -> None:
    """After a pause the feed waits in poll(); a confluent_kafka Message is falsy when its value is
    empty, and a tombstone or an empty result must still reach the gateway (to be counted)."""
    got: list[bytes | None] = []
    assigned = threading.Event()
    s = GatewaySettings(kafka=kafka, topics=topics.settings, auth_required=False)
    feed = Feed(s, lambda b: got.extend(m.value() for m in b), lambda: None, assigned.set)
    feed.start()
    values: list[bytes | None] = [None, b"", b"x", None, b"", None]
    try:
        assert assigned.wait(30)
        p = Producer(kafka.client_config())
        for i, v in enumerate(values):
            time.sleep(0.3)  # the feed is idle: the next record comes through poll()
            p.produce(topics.streams, v, f"s{i}".encode())
            assert p.flush(10) == 0
            wait_until(lambda n=i + 1: len(got) >= n, 10, f"record {i} ({v!r}) handed over")
    finally:
        feed.stop()
    assert got == values
