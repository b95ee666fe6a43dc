"""confluent-kafka Message objects made in memory, for fan-out tests without a broker."""

from __future__ import annotations

from confluent_kafka import Message

from evi.wire import (
    Detection,
    FrameMeta,
    Result,
    StreamInfo,
    encode_result,
    encode_stream_info,
    frame_headers,
)

PREFIX = "u"


def frame(stream: str, seq: int, ts: int, data: bytes, kind: str = "face") -> Message:
    meta = FrameMeta(stream, seq, ts, 320, 240, producer="test")
    headers: list[tuple[str, str | bytes | None]] = list(frame_headers(meta))
    return Message(topic=f"{PREFIX}.frames.{kind}", partition=0, offset=seq, key=stream.encode(),
                   value=data, headers=headers)


def result(
    stream: str, seq: int, ts: int, model: str = "m1", kind: str = "face", n: int = 1
) -> Message:
    dets = [Detection("face", 0.9, 0.1 * i, 0.1, 0.1 * i + 0.2, 0.5) for i in range(n)]
    r = Result(stream, seq, ts, ts + 20, kind, model, dets, 1.0, 320, 240)
    return Message(topic=f"{PREFIX}.results.{kind}", partition=0, offset=seq,
                   key=stream.encode(), value=encode_result(r))


def registry(stream: str, status: str = "live") -> Message:
    info = StreamInfo(stream, "sample:", ["face"], 10.0, 320, 240, status, producer="test")
    return Message(topic=f"{PREFIX}.streams", partition=0, offset=0, key=stream.encode(),
                   value=encode_stream_info(info))


def tombstone(stream: str) -> Message:
    return Message(topic=f"{PREFIX}.streams", partition=0, offset=1, key=stream.encode(),
                   value=None)
