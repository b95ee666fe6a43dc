"""Read back what a producer wrote: bounded in records and time."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaException, TopicPartition

from evi.kafka import partitions_of
from evi.settings import KafkaSettings
from evi.wire import FrameMeta, StreamInfo, decode_stream_info, parse_frame


@dataclass
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes | None]]


def _watermarks(c: Consumer, tp: TopicPartition) -> tuple[int, int]:
    """Watermarks, retried: a topic created a moment ago may not have a leader yet."""
    for attempt in range(20):
        try:
            low, high = c.get_watermark_offsets(tp, timeout=10, cached=False)
            return int(low), int(high)
        except KafkaException:
            if attempt == 19:
                raise
            time.sleep(0.25)
    raise AssertionError("unreachable")


def read_topic(kafka: KafkaSettings, topic: str, timeout: float = 20.0,
               limit: int = 100_000) -> list[Record]:
    """Every record now in `topic`, from the start up to the end offsets seen when called."""
    c = Consumer(kafka.client_config() | {
        "group.id": f"t-read-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    })
    try:
        n = partitions_of(kafka, topic)
        ends = {}
        for p in range(n):
            low, high = _watermarks(c, TopicPartition(topic, p))
            if high > low:
                ends[p] = high
        c.assign([TopicPartition(topic, p, 0) for p in ends])
        out: list[Record] = []
        done: set[int] = set()
        deadline = time.monotonic() + timeout
        while len(done) < len(ends) and len(out) < limit and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None or m.error():
                continue
            topic_, part, offset = m.topic(), m.partition(), m.offset()
            assert topic_ is not None and part is not None and offset is not None
            headers = m.headers() or []
            assert isinstance(headers, list)
            out.append(Record(topic_, part, offset, m.key(), bytes(m.value() or b""),
                              [(k, v if isinstance(v, bytes) or v is None else v.encode())
                               for k, v in headers]))
            if offset + 1 >= ends[part]:
                done.add(part)
        return out
    finally:
        c.close()


def frames(records: list[Record]) -> dict[str, list[FrameMeta]]:
    """Frame metadata per stream, in partition order (one stream lives on one partition)."""
    out: dict[str, list[FrameMeta]] = {}
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        meta = parse_frame(r.key, r.value, r.headers)
        out.setdefault(meta.stream, []).append(meta)
    return out


def statuses(kafka: KafkaSettings, topic: str) -> dict[str, list[StreamInfo]]:
    """Registry history per stream, oldest first."""
    out: dict[str, list[StreamInfo]] = {}
    for r in read_topic(kafka, topic):
        info = decode_stream_info(r.value)
        out.setdefault(info.stream, []).append(info)
    return out
