"""The frame producer waits for nothing at live rates and still batches a backlog: a lone frame
is sent at once in a request of its own; frames submitted faster than the broker acknowledges
them share requests."""

from __future__ import annotations

import time

from evi.settings import KafkaSettings
from evi.topics import Topics
from evi.wire import FrameMeta, frame_headers, parse_frame
from producers.metrics import ProducerMetrics
from producers.publisher import Backpressure, Pending, Publisher, producer_config
from producers.settings import PublisherSettings
from tests.helpers import consume_all, wait_until
from tests.produce_requests import ProduceRequests

BURST = 200
JPEG = b"\xff\xd8\xff" + bytes(30_000)


def frame(seq: int, topic: str) -> Pending:
    meta = FrameMeta("cam1", seq, int(time.time() * 1000), 640, 480, "test")
    return Pending("cam1", seq, JPEG, frame_headers(meta), (("face", topic),), time.monotonic())


def test_a_lone_frame_goes_alone_and_a_backlog_shares_requests(
    kafka: KafkaSettings, topics: Topics
) -> None:
    settings = PublisherSettings(queue_frames=BURST)
    config = producer_config(kafka, settings, 4 << 20, "test")
    assert config["linger.ms"] == 0
    requests = ProduceRequests()
    pub = Publisher(config, settings, 4 << 20, ProducerMetrics(), requests.factory())
    pub.add_stream("cam1")
    pub.start()
    topic = topics.frames("face")
    try:
        # A new topic's first record may be retried (its leader still settling): not counted.
        pub.submit(frame(0, topic), Backpressure.WAIT)
        wait_until(lambda: pub.stats("cam1").acked == 1, 10, "the first ack", 0.005)
        before = requests.count()
        for seq in range(1, 4):  # live: each frame acknowledged before the next is captured
            pub.submit(frame(seq, topic), Backpressure.WAIT)
            wait_until(lambda: pub.stats("cam1").acked == pub.stats("cam1").frames, 10, "an ack",
                       0.005)
        after_live = requests.count()
        assert after_live - before == 3
        for seq in range(4, 4 + BURST):
            pub.submit(frame(seq, topic), Backpressure.WAIT)
        wait_until(lambda: pub.stats("cam1").acked == 4 + BURST, 30, "the burst's acks", 0.01)
        burst = requests.count() - after_live
        assert 1 <= burst <= BURST // 5, f"{BURST} frames took {burst} requests"
    finally:
        pub.close(10)
    assert pub.stats("cam1").complete
    seqs = [parse_frame(m.key(), m.value(), m.headers()).seq
            for m in consume_all(kafka, topic, require_all=True)]  # fmt: skip
    assert seqs == list(range(4 + BURST))
