"""Read back what a producer wrote: bounded in records and time."""

from __future__ import annotations

from dataclasses import dataclass

from evi.settings import KafkaSettings
from evi.wire import FrameMeta, StreamInfo, decode_stream_info, parse_frame
from tests.helpers import consume_all, header_pairs


@dataclass
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes | None]]


def read_topic(kafka: KafkaSettings, topic: str, timeout: float = 20.0,
               limit: int = 100_000) -> list[Record]:
    """Every record now in `topic`, from the start up to the end offsets seen when called."""
    return [Record(m.topic() or topic, m.partition() or 0, m.offset() or 0, m.key(),
                   bytes(m.value() or b""), header_pairs(m))
            for m in consume_all(kafka, topic, timeout, limit)]  # fmt: skip


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
