"""The results producer waits for nothing at live rates and still batches a backlog: a lone
result is sent at once in a request of its own; a batch's results, handed over in one loop step,
share a few requests (librdkafka gathers what arrives while a request is in flight)."""

from __future__ import annotations

import asyncio

import pytest

from evi.settings import KafkaSettings
from evi.topics import Topics
from processors import sink
from processors.settings import ProcessorSettings
from tests.helpers import consume_all
from tests.produce_requests import ProduceRequests

BURST = 200


async def test_a_lone_result_goes_alone_and_a_burst_shares_requests(
    kafka: KafkaSettings, topics: Topics, monkeypatch: pytest.MonkeyPatch
) -> None:
    linger = ProcessorSettings().linger_ms
    assert linger == 0
    requests = ProduceRequests()
    monkeypatch.setattr(sink, "Producer", requests.factory())
    out = sink.Sink(kafka, 1 << 20, linger, 30.0)
    topic = topics.results("face")
    try:
        # A new topic's first record may be retried (its leader still settling): not counted.
        await asyncio.wait_for(await out.send(topic, b"cam1", b"warm-up"), 10)
        before = requests.count()
        for i in range(3):  # live: each result delivered before the next exists
            await asyncio.wait_for(await out.send(topic, b"cam1", f"live-{i}".encode()), 10)
        after_live = requests.count()
        assert after_live - before == 3
        futures = [await out.send(topic, b"cam1", f"burst-{i}".encode()) for i in range(BURST)]
        await asyncio.wait_for(asyncio.gather(*futures), 30)
        burst = requests.count() - after_live
        assert 1 <= burst <= BURST // 10, f"{BURST} results took {burst} requests"
    finally:
        assert out.close(10) == 0
    values = [m.value() for m in consume_all(kafka, topic, require_all=True)]
    assert values == [b"warm-up"] + [f"live-{i}".encode() for i in range(3)] + [
        f"burst-{i}".encode() for i in range(BURST)]
