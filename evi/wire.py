"""The wire format: the only module that knows Kafka header names and result JSON.

A frame is one record: key = stream id (UTF-8), value = the JPEG bytes untouched, headers carry
identity and timing as ASCII text so `kcat` and `kafka-console-consumer` print them readably.
A result is one record on `evi.results.<kind>`, keyed by stream id, JSON value.
See docs/wire-format.md.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from evi.errors import BadFrame

FRAME_SCHEMA = 1
RESULT_SCHEMA = 1
JPEG_CONTENT_TYPE = "image/jpeg"
JPEG_MAGIC = b"\xff\xd8\xff"

H_STREAM = "evi-stream"
H_SEQ = "evi-seq"
H_TS = "evi-ts"
H_WIDTH = "evi-width"
H_HEIGHT = "evi-height"
H_CONTENT_TYPE = "content-type"
H_PRODUCER = "evi-producer"
H_SCHEMA = "evi-schema"

FRAME_HEADERS = (H_STREAM, H_SEQ, H_TS, H_WIDTH, H_HEIGHT, H_CONTENT_TYPE, H_PRODUCER, H_SCHEMA)

_STREAM_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")

HeaderValue = str | bytes | None
Headers = Iterable[tuple[str, HeaderValue]] | Mapping[str, HeaderValue]


def valid_stream_id(stream: str) -> bool:
    """Stream ids are used in keys, URLs and metric labels: keep them to a safe alphabet."""
    return bool(_STREAM_ID.match(stream))


@dataclass(frozen=True, slots=True)
class FrameMeta:
    """Everything a frame record says about its JPEG, without the bytes."""

    stream: str
    seq: int
    ts_ms: int
    width: int
    height: int
    producer: str = ""
    content_type: str = JPEG_CONTENT_TYPE
    schema: int = FRAME_SCHEMA


def frame_headers(meta: FrameMeta) -> list[tuple[str, bytes]]:
    return [
        (H_STREAM, meta.stream.encode()),
        (H_SEQ, str(meta.seq).encode()),
        (H_TS, str(meta.ts_ms).encode()),
        (H_WIDTH, str(meta.width).encode()),
        (H_HEIGHT, str(meta.height).encode()),
        (H_CONTENT_TYPE, meta.content_type.encode()),
        (H_PRODUCER, meta.producer.encode()),
        (H_SCHEMA, str(meta.schema).encode()),
    ]


def _header_map(headers: Headers | None) -> dict[str, bytes]:
    items = headers.items() if isinstance(headers, Mapping) else headers or ()
    found: dict[str, bytes] = {}
    for name, value in items:
        if value is not None:
            found[name] = value.encode() if isinstance(value, str) else value
    return found


def _int_header(h: dict[str, bytes], name: str) -> int:
    raw = h.get(name)
    if raw is None:
        raise BadFrame("missing-header", f"header {name!r} is missing")
    try:
        return int(raw.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        msg = f"header {name!r} is not an integer: {raw[:32]!r}"
        raise BadFrame("bad-header", msg) from None


def parse_frame(
    key: bytes | None, value: bytes | None, headers: Headers | None, max_bytes: int = 0
) -> FrameMeta:
    """Validate a frame record and return its metadata; raise BadFrame with a reason otherwise."""
    h = _header_map(headers)
    if H_SCHEMA not in h:
        raise BadFrame("missing-header", f"header {H_SCHEMA!r} is missing")
    schema = _int_header(h, H_SCHEMA)
    if schema != FRAME_SCHEMA:
        msg = f"frame schema {schema} is not supported (want {FRAME_SCHEMA})"
        raise BadFrame("bad-schema", msg)
    raw_stream = h.get(H_STREAM)
    if raw_stream is None:
        raise BadFrame("missing-header", f"header {H_STREAM!r} is missing")
    stream = raw_stream.decode("utf-8", "replace")
    if not valid_stream_id(stream):
        raise BadFrame("bad-header", f"stream id {stream[:64]!r} is not valid")
    if key is not None and key != raw_stream:
        raise BadFrame("bad-key", f"record key {key[:64]!r} does not match stream {stream!r}")
    meta = FrameMeta(
        stream=stream,
        seq=_int_header(h, H_SEQ),
        ts_ms=_int_header(h, H_TS),
        width=_int_header(h, H_WIDTH),
        height=_int_header(h, H_HEIGHT),
        producer=h.get(H_PRODUCER, b"").decode("utf-8", "replace"),
        content_type=h.get(H_CONTENT_TYPE, b"").decode("utf-8", "replace"),
        schema=schema,
    )
    if meta.content_type != JPEG_CONTENT_TYPE:
        raise BadFrame("bad-content-type", f"content type {meta.content_type!r} is not image/jpeg")
    if not value:
        raise BadFrame("empty", "frame value is empty")
    if max_bytes and len(value) > max_bytes:
        raise BadFrame("too-large", f"frame is {len(value)} bytes, limit is {max_bytes}")
    if not value.startswith(JPEG_MAGIC):
        raise BadFrame("not-jpeg", "frame value does not start with a JPEG SOI marker")
    if meta.width <= 0 or meta.height <= 0:
        raise BadFrame("bad-header", f"frame size {meta.width}x{meta.height} is not positive")
    return meta


@dataclass(frozen=True, slots=True)
class Detection:
    """One detected object; box corners are normalised to 0..1 of the frame."""

    label: str
    score: float
    x1: float
    y1: float
    x2: float
    y2: float

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "score": round(self.score, 4),
            "box": [round(self.x1, 5), round(self.y1, 5), round(self.x2, 5), round(self.y2, 5)],
        }


@dataclass(frozen=True, slots=True)
class Result:
    """What a processor says about one frame."""

    stream: str
    seq: int
    ts_ms: int
    processed_ms: int
    kind: str
    model: str
    detections: list[Detection] = field(default_factory=list)
    infer_ms: float = 0.0
    width: int = 0
    height: int = 0
    schema: int = RESULT_SCHEMA


def result_doc(r: Result) -> dict[str, Any]:
    """The result's JSON fields (the results record, and the gateway's websocket header)."""
    # Built by hand: dataclasses.asdict deep-copies and costs ~3x as much on the hot path.
    return {
        "stream": r.stream,
        "seq": r.seq,
        "ts_ms": r.ts_ms,
        "processed_ms": r.processed_ms,
        "kind": r.kind,
        "model": r.model,
        "detections": [d.to_json() for d in r.detections],
        "infer_ms": round(r.infer_ms, 3),
        "width": r.width,
        "height": r.height,
        "schema": r.schema,
    }


def encode_result(r: Result) -> bytes:
    return json.dumps(result_doc(r), separators=(",", ":")).encode()


class BadResult(ValueError):
    """A results record that does not follow the result schema."""


def decode_result(value: bytes) -> Result:
    try:
        doc = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BadResult(f"result is not JSON: {e}") from None
    if not isinstance(doc, dict):
        raise BadResult("result is not a JSON object")
    if doc.get("schema") != RESULT_SCHEMA:
        raise BadResult(f"result schema {doc.get('schema')!r} is not supported")
    try:
        dets = [
            Detection(str(d["label"]), float(d["score"]), *(float(v) for v in d["box"]))
            for d in doc["detections"]
        ]
        return Result(
            stream=str(doc["stream"]),
            seq=int(doc["seq"]),
            ts_ms=int(doc["ts_ms"]),
            processed_ms=int(doc["processed_ms"]),
            kind=str(doc["kind"]),
            model=str(doc["model"]),
            detections=dets,
            infer_ms=float(doc.get("infer_ms", 0.0)),
            width=int(doc.get("width", 0)),
            height=int(doc.get("height", 0)),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise BadResult(f"result field is missing or malformed: {e!r}") from None


def dead_letter_headers(
    reason: str, message: str, topic: str, partition: int, offset: int, headers: Headers | None
) -> list[tuple[str, bytes]]:
    """Original headers plus why and where, so a dead letter can be traced and replayed."""
    kept = _header_map(headers)
    out = [(k, v) for k, v in kept.items() if not k.startswith("evi-dlq-")]
    out += [
        ("evi-dlq-reason", reason.encode()),
        ("evi-dlq-error", message[:500].encode()),
        ("evi-dlq-origin", f"{topic}[{partition}]@{offset}".encode()),
    ]
    return out


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """A stream's entry in the compacted `evi.streams` registry (key = stream id)."""

    stream: str
    source: str
    kinds: list[str]
    fps: float
    width: int
    height: int
    status: str  # live | reconnecting | ended | error
    message: str = ""
    producer: str = ""
    updated_ms: int = 0
    schema: int = RESULT_SCHEMA


def encode_stream_info(info: StreamInfo) -> bytes:
    return json.dumps(asdict(info), separators=(",", ":")).encode()


def decode_stream_info(value: bytes) -> StreamInfo:
    try:
        doc = json.loads(value)
        return StreamInfo(
            stream=str(doc["stream"]),
            source=str(doc["source"]),
            kinds=[str(k) for k in doc["kinds"]],
            fps=float(doc["fps"]),
            width=int(doc["width"]),
            height=int(doc["height"]),
            status=str(doc["status"]),
            message=str(doc.get("message", "")),
            producer=str(doc.get("producer", "")),
            updated_ms=int(doc.get("updated_ms", 0)),
        )
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise BadResult(f"stream registry record is malformed: {e!r}") from None
