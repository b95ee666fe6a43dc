"""Publisher backpressure and accounting against a fake librdkafka (no broker)."""

from __future__ import annotations

from confluent_kafka import KafkaError

from producers.metrics import ProducerMetrics
from producers.publisher import Pending, Publisher, producer_config
from producers.settings import PublisherSettings
from tests.helpers import wait_until
from tests.producers.fakes import FakeProducer

KB = 1024


def make(settings: PublisherSettings, max_message_bytes: int = 4 << 20,
         producer: FakeProducer | None = None) -> tuple[Publisher, FakeProducer]:
    fake = producer if producer is not None else FakeProducer()
    pub = Publisher({}, settings, max_message_bytes, ProducerMetrics(), lambda cfg: fake)
    pub.add_stream("s1")
    pub.start()
    return pub, fake


def item(seq: int, size: int = 300 * KB, kinds: tuple[str, ...] = ("face",),
         stream: str = "s1") -> Pending:
    return Pending(stream, seq, bytes([seq % 256]) * size, [("evi-seq", str(seq).encode())],
                   tuple((k, f"evi.frames.{k}") for k in kinds), 0.0)


def test_broker_down_drops_oldest_and_caps_inflight_bytes() -> None:
    s = PublisherSettings(queue_frames=2, max_inflight_bytes=1 << 20)
    fake = FakeProducer()
    fake.up = False
    pub, _ = make(s, producer=fake)
    try:
        for seq in range(3):  # these fit the in-flight cap: 3 x 300 KB < 1 MiB
            assert pub.submit(item(seq))
            wait_until(lambda: len(fake.records) == seq + 1, 5, "record in librdkafka")  # noqa: B023
        for seq in range(3, 20):
            assert pub.submit(item(seq))
        wait_until(lambda: pub.stats("s1").dropped["queue_full"] == 15, 5, "15 drops")
        assert pub.queued("s1") == 2
        assert len(fake.records) == 3
        assert pub.max_inflight_seen <= s.max_inflight_bytes
        fake.up = True  # the broker comes back: the two newest pending frames go out
        wait_until(lambda: pub.stats("s1").acked == 5, 5, "5 acks")
        assert [int(r[3][0][1]) for r in fake.records] == [0, 1, 2, 18, 19]
        st = pub.stats("s1")
        assert (st.frames, st.records, st.acked) == (20, 20, 5)
        assert pub.metrics.dropped_count("s1", "queue_full") == 15
    finally:
        pub.close(1.0)


def test_one_frame_many_kinds_is_one_record_per_kind_with_same_bytes() -> None:
    pub, fake = make(PublisherSettings())
    try:
        pub.submit(item(0, 1000, kinds=("face", "person", "vehicle")))
        wait_until(lambda: pub.stats("s1").acked == 3, 5, "3 acks")
        assert sorted(r[0] for r in fake.records) == [
            "evi.frames.face", "evi.frames.person", "evi.frames.vehicle"]
        assert len({r[2] for r in fake.records}) == 1
        assert {r[1] for r in fake.records} == {b"s1"}
        assert pub.stats("s1").complete
    finally:
        pub.close(1.0)


def test_delivery_failures_are_counted_not_raised() -> None:
    fake = FakeProducer()
    fake.fail_with = KafkaError._MSG_TIMED_OUT
    pub, _ = make(PublisherSettings(), producer=fake)
    try:
        for seq in range(4):
            pub.submit(item(seq, 1000))
        wait_until(lambda: pub.stats("s1").dropped["delivery_failed"] == 4, 5, "4 failures")
        assert pub.stats("s1").acked == 0
        assert pub.inflight_bytes == 0
        assert not pub.stats("s1").complete
    finally:
        pub.close(1.0)


def test_frame_over_topic_limit_is_refused_and_counted() -> None:
    pub, fake = make(PublisherSettings(), max_message_bytes=64 * KB)
    try:
        assert not pub.submit(item(0, 80 * KB))
        assert pub.submit(item(1, 10 * KB))
        wait_until(lambda: pub.stats("s1").acked == 1, 5, "1 ack")
        assert pub.stats("s1").dropped == {"too_large": 1}
        assert len(fake.records) == 1
    finally:
        pub.close(1.0)


def test_close_with_broker_down_is_bounded_and_counts_shutdown_drops() -> None:
    fake = FakeProducer()
    fake.up = False
    pub, _ = make(PublisherSettings(queue_frames=3, max_inflight_bytes=1 << 20), producer=fake)
    for seq in range(3):
        pub.submit(item(seq))
        wait_until(lambda: len(fake.records) == seq + 1, 5, "record in librdkafka")  # noqa: B023
    for seq in range(3, 8):
        pub.submit(item(seq))
    pub.close(0.3)
    st = pub.stats("s1")
    assert st.acked == 0
    assert st.dropped["shutdown"] == 6  # 3 still queued + 3 purged from librdkafka
    assert st.dropped["queue_full"] == 2
    assert not pub.submit(item(9))


def test_librdkafka_config_is_tuned_for_large_frames() -> None:
    from evi.settings import KafkaSettings

    cfg = producer_config(KafkaSettings(), PublisherSettings(), 4 << 20, "host-1")
    assert cfg["acks"] == "all" and cfg["enable.idempotence"] is True
    assert cfg["compression.type"] == "none"
    assert cfg["message.max.bytes"] == 4 << 20
    assert cfg["batch.size"] <= cfg["message.max.bytes"]
    assert cfg["client.id"] == "host-1"
