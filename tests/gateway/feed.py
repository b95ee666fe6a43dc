"""Records the gateway reads, made by hand: frames (real JPEGs), results and registry entries,
so gateway tests need neither a producer nor a processor."""

from __future__ import annotations

import time
from functools import lru_cache

import cv2
import numpy as np
from confluent_kafka import Producer

from evi.settings import KafkaSettings
from evi.topics import Topics
from evi.wire import (
    Detection,
    FrameMeta,
    Result,
    StreamInfo,
    encode_result,
    encode_stream_info,
    frame_headers,
)


@lru_cache(maxsize=512)
def jpeg(seq: int, width: int = 320, height: int = 240) -> bytes:
    """A real JPEG, different for every seq (so a test can tell frames apart by their bytes)."""
    img = np.zeros((height, width, 3), np.uint8)
    img[:, :, 0] = np.linspace(40, 200, width, dtype=np.uint8)[None, :]
    img[:, :, 1] = (seq * 37) % 256
    cv2.putText(img, f"#{seq}", (10, height // 2), cv2.FONT_HERSHEY_SIMPLEX, 1.5,
                (255, 255, 255), 3)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 80])
    assert ok
    return buf.tobytes()


@lru_cache(maxsize=256)
def big_jpeg(seq: int) -> bytes:
    """A ~110 kB JPEG (noise compresses badly), so a few messages fill socket buffers."""
    img = np.random.default_rng(7).integers(0, 255, (300, 400, 3), dtype=np.uint8)
    cv2.putText(img, f"#{seq}", (20, 150), cv2.FONT_HERSHEY_SIMPLEX, 3, (255, 255, 255), 6)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return buf.tobytes()


def detection(seq: int) -> Detection:
    x = 0.1 + (seq % 10) / 20
    return Detection("face", 0.9, x, 0.2, x + 0.3, 0.6)


class Feeder:
    def __init__(self, kafka: KafkaSettings, topics: Topics) -> None:
        self.topics = topics
        self.producer = Producer(kafka.client_config() | {"linger.ms": 2, "acks": "all"})

    def frame(self, stream: str, seq: int, ts_ms: int, data: bytes, kind: str = "face") -> None:
        meta = FrameMeta(stream, seq, ts_ms, 320, 240, producer="test")
        headers: list[tuple[str, str | bytes | None]] = list(frame_headers(meta))
        self.producer.produce(self.topics.frames(kind), data, stream.encode(),
                              headers=headers, timestamp=ts_ms)
        self.producer.poll(0)

    def result(
        self, stream: str, seq: int, ts_ms: int, kind: str = "face", model: str = "m1",
        dets: list[Detection] | None = None,
    ) -> None:
        now = int(time.time() * 1000)
        r = Result(stream, seq, ts_ms, now, kind, model,
                   [detection(seq)] if dets is None else dets, 1.5, 320, 240)
        self.producer.produce(self.topics.results(kind), encode_result(r), stream.encode())
        self.producer.poll(0)

    def pair(
        self, stream: str, seq: int, kind: str = "face", model: str = "m1", big: bool = False
    ) -> bytes:
        """A frame and its result; returns the JPEG."""
        ts = int(time.time() * 1000)
        data = big_jpeg(seq) if big else jpeg(seq)
        self.frame(stream, seq, ts, data, kind)
        self.result(stream, seq, ts, kind, model)
        return data

    def register(self, stream: str, status: str = "live", kinds: tuple[str, ...] = ("face",),
                 source: str = "sample:") -> None:
        info = StreamInfo(stream, source, list(kinds), 10.0, 320, 240, status,
                          producer="test", updated_ms=int(time.time() * 1000))
        self.producer.produce(self.topics.streams, encode_stream_info(info), stream.encode())
        self.producer.poll(0)

    def tombstone(self, stream: str) -> None:
        self.producer.produce(self.topics.streams, None, stream.encode())
        self.producer.poll(0)

    def flush(self) -> None:
        left = self.producer.flush(10)
        assert left == 0, f"{left} records not delivered"
