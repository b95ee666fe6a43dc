"""Publisher backpressure and accounting against a fake librdkafka (no broker)."""

from __future__ import annotations

import threading
import time

import pytest
from confluent_kafka import KafkaError, KafkaException

from producers.metrics import ProducerMetrics
from producers.publisher import Backpressure, Pending, Publisher, producer_config
from producers.settings import PublisherSettings
from tests.helpers import wait_until
from tests.producers.fakes import FakeProducer

KB = 1024


def make(settings: PublisherSettings, max_message_bytes: int = 4 << 20,
         producer: FakeProducer | None = None,
         streams: tuple[str, ...] = ("s1",)) -> tuple[Publisher, FakeProducer]:
    fake = producer if producer is not None else FakeProducer()
    pub = Publisher({}, settings, max_message_bytes, ProducerMetrics(), lambda cfg: fake)
    for stream in streams:
        pub.add_stream(stream)
    pub.start()
    return pub, fake


def sent_seqs(fake: FakeProducer, stream: str) -> list[int]:
    return [int(r[3][0][1]) for r in fake.records if r[1] == stream.encode()]


def submit_all(pub: Publisher, streams: tuple[str, ...], n: int, policy: Backpressure,
               size: int) -> float:
    """Each stream submits frames 0..n-1 from its own thread, as capture does; wall seconds."""
    def capture(stream: str) -> None:
        for seq in range(n):
            pub.submit(item(seq, size, stream=stream), policy)

    threads = [threading.Thread(target=capture, args=(s,)) for s in streams]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return time.monotonic() - t0


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
    # A topic that accepts less caps the batch: the broker checks whole batches against it.
    small = producer_config(KafkaSettings(), PublisherSettings(), 4 << 20, "h", 64 << 10)
    assert small["batch.size"] == 64 << 10 and small["message.max.bytes"] == 4 << 20


STREAMS = ("s1", "s2", "s3")


def test_wait_policy_delivers_every_frame_to_a_slow_broker_in_order() -> None:
    # A broker that acknowledges one record per 2 ms, librdkafka's queue holding 4: each stream's
    # queue of 2 is full nearly all the time and every ack wakes every waiting stream (the old
    # wake-up-counting bound gave up after ~620 wake-ups and dropped frames).
    fake = FakeProducer(max_queue=4, ack_interval=0.002)
    pub, _ = make(PublisherSettings(queue_frames=2), producer=fake, streams=STREAMS)
    try:
        submit_all(pub, STREAMS, 250, Backpressure.WAIT, 2 * KB)
        wait_until(lambda: sum(pub.stats(s).acked for s in STREAMS) == 750, 30, "750 acks")
        for s in STREAMS:
            st = pub.stats(s)
            assert (st.frames, st.acked, dict(st.dropped)) == (250, 250, {}), s
            assert sent_seqs(fake, s) == list(range(250)), s
        assert fake.max_pending <= 4
    finally:
        pub.close(1.0)


def test_drop_oldest_policy_stays_current_with_a_slow_broker() -> None:
    fake = FakeProducer(max_queue=4, ack_interval=0.002)
    pub, _ = make(PublisherSettings(queue_frames=2), producer=fake, streams=STREAMS)
    try:
        submit_all(pub, STREAMS, 250, Backpressure.DROP_OLDEST, 2 * KB)
        # Capture never waited for the broker: it was done long before 750 acks (>= 1.5 s).
        assert sum(pub.stats(s).acked for s in STREAMS) < 500
        for s in STREAMS:
            st = pub.stats(s)
            # Every frame is accounted for once the sender has handed the last one over (an
            # empty queue alone can still mean "popped, not yet produced").
            wait_until(
                lambda: len(sent_seqs(fake, s)) + st.dropped["queue_full"] == 250,  # noqa: B023
                10, "queues drained",
            )
            assert st.dropped["queue_full"] > 100, (s, st)
            seqs = sent_seqs(fake, s)
            assert seqs == sorted(seqs) and seqs[-1] == 249  # in order, and the newest arrives
            assert len(seqs) + st.dropped["queue_full"] == 250
    finally:
        pub.close(5.0)


def test_wait_policy_is_bounded_then_drops_oldest_and_stops_on_cancel() -> None:
    fake = FakeProducer()
    fake.up = False  # nothing is acknowledged
    s = PublisherSettings(queue_frames=1, max_inflight_bytes=1 << 20, block_timeout_s=0.3)
    pub, _ = make(s, producer=fake)
    try:
        for seq in range(4):  # 3 x 300 KB fill the in-flight cap, the 4th waits in the queue
            assert pub.submit(item(seq), Backpressure.WAIT)
        wait_until(lambda: len(fake.records) == 3 and pub.queued("s1") == 1, 5, "cap reached")
        t0 = time.monotonic()
        assert pub.submit(item(4), Backpressure.WAIT)  # waits 0.3 s, then drops frame 3
        assert 0.25 <= time.monotonic() - t0 < 2.0
        assert pub.stats("s1").dropped == {"queue_full": 1}
        cancel = threading.Event()
        threading.Timer(0.1, cancel.set).start()
        t0 = time.monotonic()
        assert not pub.submit(item(5), Backpressure.WAIT, cancel)  # Ctrl-C ends the wait
        assert time.monotonic() - t0 < 0.3
        assert pub.stats("s1").dropped == {"queue_full": 1, "shutdown": 1}
    finally:
        pub.close(0.2)


class RefusingProducer(FakeProducer):
    """librdkafka refusing a record at produce() time (e.g. larger than message.max.bytes)."""

    def produce(self, topic: str, value: bytes, key: bytes, headers: object = None,
                on_delivery: object = None) -> None:
        if len(value) > 50 * KB:
            raise KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))
        super().produce(topic, value, key, headers, on_delivery)  # type: ignore[arg-type]


def test_record_refused_by_librdkafka_or_broker_is_counted_and_sending_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = RefusingProducer()
    pub, _ = make(PublisherSettings(), producer=fake)
    try:
        assert pub.submit(item(0, 60 * KB))  # under our limit, over librdkafka's
        assert pub.submit(item(1, 10 * KB))
        wait_until(lambda: pub.stats("s1").acked == 1, 5, "the next frame still goes out")
        assert pub.stats("s1").dropped == {"too_large": 1}
        assert pub.inflight_bytes == 0
        assert pub.metrics.registry.get_sample_value(
            "evi_producer_delivery_errors_total",
            {"stream": "s1", "error": "MSG_SIZE_TOO_LARGE"}) == 1
    finally:
        pub.close(1.0)
    (line,) = [r.getMessage() for r in caplog.records if "over the limit" in r.getMessage()]
    assert line.startswith("stream=s1 seq=0 frame is 61440 bytes, over the limit of "
                           "evi.frames.face: lower --quality")
