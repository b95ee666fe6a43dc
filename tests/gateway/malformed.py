"""A catalogue of malformed records, each with the reason the gateway must count it under.

Used in memory (tests/gateway/test_robustness.py) and on the real broker
(tests/gateway/test_bad_records_and_stream_floods_kafka.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Message

from evi.topics import Topics
from evi.wire import FrameMeta, frame_headers

GOOD_RESULT: dict[str, Any] = {
    "stream": "cam1", "seq": 1, "ts_ms": 1000, "processed_ms": 1010, "kind": "face",
    "model": "m1", "detections": [], "infer_ms": 1.0, "width": 320, "height": 240, "schema": 1,
}
GOOD_INFO: dict[str, Any] = {
    "stream": "cam1", "source": "sample:", "kinds": ["face"], "fps": 10.0, "width": 320,
    "height": 240, "status": "live", "message": "", "producer": "x", "updated_ms": 0, "schema": 1,
}
FAKE_JPEG = b"\xff\xd8\xff\xe0" + bytes(200)  # passes the gateway's checks (magic, size)


@dataclass(frozen=True)
class Bad:
    where: str  # results | streams | frames
    name: str
    key: bytes | None
    value: bytes | None
    reason: str
    headers: tuple[tuple[str, bytes], ...] | None = None

    def topic(self, topics: Topics, kind: str = "face") -> str:
        return {"results": topics.results(kind), "streams": topics.streams,
                "frames": topics.frames(kind)}[self.where]

    def message(self, prefix: str, kind: str = "face") -> Message:
        topic = f"{prefix}.{self.where}.{kind}" if self.where != "streams" else f"{prefix}.streams"
        return Message(topic=topic, partition=0, offset=0, key=self.key, value=self.value,
                       headers=list(self.headers) if self.headers is not None else None)


def _doc(base: dict[str, Any], **kw: Any) -> bytes:
    return json.dumps(base | kw).encode()


def _raw(base: dict[str, Any], name: str, literal: str) -> bytes:
    """JSON with one field replaced by text json.dumps would never write (NaN, 10**5000)."""
    return json.dumps(base | {name: "@@"}).replace('"@@"', literal).encode()


def _headers(**kw: bytes | None) -> tuple[tuple[str, bytes], ...]:
    h = {k: v for k, v in frame_headers(FrameMeta("cam1", 1, 1000, 320, 240, producer="x"))}
    for name, value in kw.items():
        header = name.replace("_", "-")
        if value is None:
            h.pop(header, None)
        else:
            h[header] = value
    return tuple(h.items())


R, S = GOOD_RESULT, GOOD_INFO
K = b"cam1"

RESULTS = [
    Bad("results", "not json", K, b"{nope", "bad-json"),
    Bad("results", "json array", K, b"[1,2]", "bad-json"),
    Bad("results", "empty value", K, b"", "bad-json"),
    Bad("results", "null value", K, None, "bad-json"),
    Bad("results", "not utf-8", K, b"\xff\xfe{", "bad-json"),
    Bad("results", "NaN", K, _raw(R, "infer_ms", "NaN"), "bad-json"),
    Bad("results", "Infinity", K, _raw(R, "infer_ms", "Infinity"), "bad-json"),
    Bad("results", "5000-digit int", K, _raw(R, "seq", "1" * 5000), "bad-json"),
    Bad("results", "deep nesting", K, b"[" * 100_000, "bad-json"),
    Bad("results", "negative seq", K, _doc(R, seq=-1), "bad-field"),
    Bad("results", "seq 2**53", K, _doc(R, seq=2**53), "bad-field"),
    Bad("results", "seq true", K, _doc(R, seq=True), "bad-field"),
    Bad("results", "seq string", K, _doc(R, seq="5"), "bad-field"),
    Bad("results", "negative ts", K, _doc(R, ts_ms=-5), "bad-field"),
    Bad("results", "ts 10**20", K, _doc(R, ts_ms=10**20), "bad-field"),
    Bad("results", "ts float", K, _doc(R, ts_ms=1.5), "bad-field"),
    Bad("results", "no stream", K, _doc({k: v for k, v in R.items() if k != "stream"}),
        "bad-field"),
    Bad("results", "bad stream id", b"a b", _doc(R, stream="a b"), "bad-field"),
    Bad("results", "non-ascii stream", "Ω".encode(), _doc(R, stream="Ω"), "bad-field"),
    Bad("results", "bad model", K, _doc(R, model="m/1"), "bad-field"),
    Bad("results", "long model", K, _doc(R, model="m" * 65), "bad-field"),
    Bad("results", "bad kind", K, _doc(R, kind="Face"), "bad-field"),
    Bad("results", "schema 2", K, _doc(R, schema=2), "bad-field"),
    Bad("results", "detections not list", K, _doc(R, detections={}), "bad-field"),
    Bad("results", "detection not object", K, _doc(R, detections=[1]), "bad-field"),
    Bad("results", "box of 3", K,
        _doc(R, detections=[{"label": "f", "score": 1, "box": [0, 0, 1]}]), "bad-field"),
    Bad("results", "1001 detections", K,
        _doc(R, detections=[{"label": "f", "score": 1, "box": [0, 0, 1, 1]}] * 1001), "bad-field"),
    Bad("results", "infer_ms negative", K, _doc(R, infer_ms=-1), "bad-field"),
    Bad("results", "width 70000", K, _doc(R, width=70_000), "bad-field"),
    Bad("results", "key is another stream", b"cam2", _doc(R), "bad-key"),
    Bad("results", "no key", None, _doc(R), "bad-key"),
    Bad("results", "key not utf-8", b"\xff\xfe", _doc(R), "bad-key"),
]

REGISTRY_KEYED = [  # every one has a key: a compacted topic refuses records without
    Bad("streams", "not json", K, b"{nope", "bad-json"),
    Bad("streams", "json string", K, b'"cam1"', "bad-json"),
    Bad("streams", "NaN fps", K, _raw(S, "fps", "NaN"), "bad-json"),
    Bad("streams", "deep nesting", K, b'{"a":' * 50_000, "bad-json"),
    Bad("streams", "bad status", K, _doc(S, status="sleeping"), "bad-field"),
    Bad("streams", "kinds not list", K, _doc(S, kinds="face"), "bad-field"),
    Bad("streams", "65 kinds", K, _doc(S, kinds=["face"] * 65), "bad-field"),
    Bad("streams", "bad kind", K, _doc(S, kinds=["Face!"]), "bad-field"),
    Bad("streams", "fps 1e308", K, _doc(S, fps=1e308), "bad-field"),
    Bad("streams", "negative width", K, _doc(S, width=-1), "bad-field"),
    Bad("streams", "long source", K, _doc(S, source="x" * 2000), "bad-field"),
    Bad("streams", "updated_ms negative", K, _doc(S, updated_ms=-1), "bad-field"),
    Bad("streams", "key is another stream", b"cam9", _doc(S), "bad-key"),
    Bad("streams", "key not a stream id", b"bad key!", _doc(S), "bad-key"),
    Bad("streams", "tombstone, bad key", b"bad key!", None, "bad-key"),
    Bad("streams", "tombstone, key not utf-8", b"\xff\xfe\xfd", None, "bad-key"),
    Bad("streams", "tombstone, empty key", b"", None, "bad-key"),
    Bad("streams", "tombstone, 200-byte key", b"a" * 200, None, "bad-key"),
]
REGISTRY = [*REGISTRY_KEYED, Bad("streams", "no key", None, _doc(S), "bad-key"),
            Bad("streams", "tombstone, no key", None, None, "bad-key")]

FRAMES = [
    Bad("frames", "not jpeg", K, b"GIF89a" + bytes(100), "not-jpeg", _headers()),
    Bad("frames", "empty", K, b"", "empty", _headers()),
    Bad("frames", "negative evi-ts", K, FAKE_JPEG, "bad-header", _headers(evi_ts=b"-5")),
    Bad("frames", "evi-seq 23 digits", K, FAKE_JPEG, "bad-header",
        _headers(evi_seq=b"9" * 23)),
    Bad("frames", "evi-ts 1e3", K, FAKE_JPEG, "bad-header", _headers(evi_ts=b"1e3")),
    Bad("frames", "arabic digits", K, FAKE_JPEG, "bad-header",
        _headers(evi_seq="١٢".encode())),
    Bad("frames", "width 0", K, FAKE_JPEG, "bad-header", _headers(evi_width=b"0")),
    Bad("frames", "no schema", K, FAKE_JPEG, "missing-header", _headers(evi_schema=None)),
    Bad("frames", "no seq", K, FAKE_JPEG, "missing-header", _headers(evi_seq=None)),
    Bad("frames", "schema 2", K, FAKE_JPEG, "bad-schema", _headers(evi_schema=b"2")),
    Bad("frames", "key is another stream", b"cam2", FAKE_JPEG, "bad-key", _headers()),
    Bad("frames", "stream not utf-8", b"\xff", FAKE_JPEG, "bad-header",
        _headers(evi_stream=b"\xff")),
    Bad("frames", "png", K, FAKE_JPEG, "bad-content-type",
        _headers(content_type=b"image/png")),
]

ALL = RESULTS + REGISTRY + FRAMES
