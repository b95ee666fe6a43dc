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

# `\Z`, not `$`: `$` also matches before a trailing newline ("cam1\n" would pass).
_STREAM_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
_KIND = re.compile(r"^[a-z][a-z0-9-]{0,31}\Z")  # evi.topics.check_kind's rule
_DIGITS = re.compile(rb"^[0-9]{1,19}\Z")

# Every integer on the wire has a range. Sequence numbers and times stay below 2**53 so that
# JSON readers with doubles (the dashboard's JavaScript) see them exactly.
MAX_SEQ = 2**53 - 1
MAX_TS_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
MAX_SIDE = 65_535  # JPEG's own limit on a side
MAX_SCHEMA = 1_000_000
MAX_DETECTIONS = 1_000
MAX_KEYPOINTS = 64  # per detection (the pose model has 4)
MAX_TEXT = 1_024  # free-text fields (registry source and message)
MAX_PRODUCER = 128

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


def _int_header(h: dict[str, bytes], name: str, lo: int, hi: int) -> int:
    """A decimal header in [lo, hi]. Digits only (no sign, `_`, spaces or non-ASCII digits, all
    of which `int()` would take) and at most 19 of them, so nothing later overflows."""
    raw = h.get(name)
    if raw is None:
        raise BadFrame("missing-header", f"header {name!r} is missing")
    if not _DIGITS.match(raw):
        raise BadFrame("bad-header", f"header {name!r} is not a decimal integer: {raw[:32]!r}")
    value = int(raw)
    if not lo <= value <= hi:
        raise BadFrame("bad-header", f"header {name!r} is {raw[:32]!r}, not in {lo}..{hi}")
    return value


def parse_frame(
    key: bytes | None, value: bytes | None, headers: Headers | None, max_bytes: int = 0
) -> FrameMeta:
    """Validate a frame record and return its metadata; raise BadFrame with a reason otherwise."""
    h = _header_map(headers)
    if H_SCHEMA not in h:
        raise BadFrame("missing-header", f"header {H_SCHEMA!r} is missing")
    schema = _int_header(h, H_SCHEMA, 0, MAX_SCHEMA)
    if schema != FRAME_SCHEMA:
        msg = f"frame schema {schema} is not supported (want {FRAME_SCHEMA})"
        raise BadFrame("bad-schema", msg)
    raw_stream = h.get(H_STREAM)
    if raw_stream is None:
        raise BadFrame("missing-header", f"header {H_STREAM!r} is missing")
    stream = raw_stream[:129].decode("utf-8", "replace")
    if not valid_stream_id(stream):
        raise BadFrame("bad-header", f"stream id {stream[:64]!r} is not valid")
    if key is not None and key != raw_stream:
        raise BadFrame("bad-key", f"record key {key[:64]!r} does not match stream {stream!r}")
    ctype = h.get(H_CONTENT_TYPE, b"")[:64].decode("utf-8", "replace")
    meta = FrameMeta(
        stream=stream,
        seq=_int_header(h, H_SEQ, 0, MAX_SEQ),
        ts_ms=_int_header(h, H_TS, 0, MAX_TS_MS),
        width=_int_header(h, H_WIDTH, 1, MAX_SIDE),
        height=_int_header(h, H_HEIGHT, 1, MAX_SIDE),
        producer=h.get(H_PRODUCER, b"")[:MAX_PRODUCER].decode("utf-8", "replace"),
        content_type=ctype,
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
    keypoints: tuple[tuple[float, float], ...] = ()  # normalised like the box; optional

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "label": self.label,
            "score": round(self.score, 4),
            "box": [round(self.x1, 5), round(self.y1, 5), round(self.x2, 5), round(self.y2, 5)],
        }
        if self.keypoints:
            doc["keypoints"] = [[round(x, 5), round(y, 5)] for x, y in self.keypoints]
        return doc


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
    """ValueError for a NaN or infinite number: JSON has none, and readers refuse them."""
    return json.dumps(result_doc(r), separators=(",", ":"), allow_nan=False).encode()


class BadResult(ValueError):
    """A results record that does not follow the result schema."""


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON allows")


def _json_object(value: bytes | None, what: str) -> dict[str, Any]:
    """A JSON object, or BadResult: not JSON, NaN/Infinity, nesting too deep for the parser,
    integers too long for Python (ValueError) all become one error."""
    try:
        doc = json.loads(value or b"", parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise BadResult(f"{what} is not JSON: {str(e)[:200]}") from None
    if not isinstance(doc, dict):
        raise BadResult(f"{what} is not a JSON object")
    return doc


def _show(v: object) -> str:
    """A value for an error message, short whatever it is (an int may have 4,300 digits)."""
    if type(v) is int and not -(10**30) < v < 10**30:
        return f"an integer of {len(str(abs(v)))} digits"
    return repr(v)[:40] if isinstance(v, str) else str(v)[:40]


def _int(doc: Mapping[str, Any], name: str, lo: int, hi: int, default: int | None = None) -> int:
    v = doc.get(name, default)
    if type(v) is not int:  # not bool, not float, not a string of digits
        raise BadResult(f"field {name!r} is not an integer: {_show(v)}")
    if not lo <= v <= hi:
        raise BadResult(f"field {name!r} is {_show(v)}, not in {lo}..{hi}")
    return v


def _float(doc: Mapping[str, Any], name: str, lo: float, hi: float,
           default: float | None = None) -> float:  # fmt: skip
    v = doc.get(name, default)
    if type(v) not in (int, float):
        raise BadResult(f"field {name!r} is not a number: {_show(v)}")
    if not lo <= v <= hi:  # before float(): an int of 309+ digits overflows it
        raise BadResult(f"field {name!r} is {_show(v)}, not in {lo}..{hi}")
    return float(v)  # NaN and Infinity were refused by the parser


def _str(doc: Mapping[str, Any], name: str, limit: int, default: str | None = None,
         pattern: re.Pattern[str] | None = None) -> str:  # fmt: skip
    v = doc.get(name, default)
    if not isinstance(v, str):
        raise BadResult(f"field {name!r} is not a string")
    if len(v) > limit or (pattern is not None and not pattern.match(v)):
        raise BadResult(f"field {name!r} is not valid: {v[:40]!r}")
    return v


def _detection(d: object) -> Detection:
    if not isinstance(d, dict):
        raise BadResult("a detection is not a JSON object")
    box = d.get("box")
    if not isinstance(box, list) or len(box) != 4:
        raise BadResult("a detection's box is not a list of 4 numbers")
    x1, y1, x2, y2 = (_float({"box": v}, "box", -1e6, 1e6) for v in box)
    return Detection(_str(d, "label", 64), _float(d, "score", -1e6, 1e6), x1, y1, x2, y2,
                     _keypoints(d.get("keypoints", [])))


def _keypoints(points: object) -> tuple[tuple[float, float], ...]:
    if not isinstance(points, list) or len(points) > MAX_KEYPOINTS:
        raise BadResult(f"a detection's keypoints are not a list of at most {MAX_KEYPOINTS}")
    out = []
    for p in points:
        if not isinstance(p, list) or len(p) != 2:
            raise BadResult("a keypoint is not a list of 2 numbers")
        out.append((_float({"keypoint": p[0]}, "keypoint", -1e6, 1e6),
                    _float({"keypoint": p[1]}, "keypoint", -1e6, 1e6)))
    return tuple(out)


def decode_result(value: bytes | None) -> Result:
    """A results record → Result; BadResult (one line) for anything off the schema, out of range
    or not finite. Nothing else escapes, whatever the bytes."""
    doc = _json_object(value, "result")
    if doc.get("schema") != RESULT_SCHEMA or type(doc.get("schema")) is not int:
        raise BadResult(f"result schema {str(doc.get('schema'))[:40]!r} is not supported")
    dets = doc.get("detections")
    if not isinstance(dets, list):
        raise BadResult("field 'detections' is not a list")
    if len(dets) > MAX_DETECTIONS:
        raise BadResult(f"{len(dets)} detections, at most {MAX_DETECTIONS}")
    return Result(
        stream=_str(doc, "stream", 128, pattern=_STREAM_ID),
        seq=_int(doc, "seq", 0, MAX_SEQ),
        ts_ms=_int(doc, "ts_ms", 0, MAX_TS_MS),
        processed_ms=_int(doc, "processed_ms", 0, MAX_TS_MS),
        kind=_str(doc, "kind", 32, pattern=_KIND),
        model=_str(doc, "model", 64, pattern=_MODEL_NAME),
        detections=[_detection(d) for d in dets],
        infer_ms=_float(doc, "infer_ms", 0.0, 1e9, 0.0),
        width=_int(doc, "width", 0, MAX_SIDE, 0),
        height=_int(doc, "height", 0, MAX_SIDE, 0),
    )


DLQ_VALUE_MAX = 1024  # bytes kept of any one original header
DLQ_HEADERS_MAX = 16 * 1024  # bytes of original headers kept in all
DLQ_NAME_MAX = 256  # bytes of a header's name


def dead_letter_headers(
    reason: str, message: str, topic: str, partition: int, offset: int, headers: Headers | None,
    cut: list[str] | None = None,
) -> list[tuple[str, bytes]]:  # fmt: skip
    """Original headers plus why and where, so a dead letter can be traced and replayed.

    The copy is bounded (each value to DLQ_VALUE_MAX, all to DLQ_HEADERS_MAX) so a dead letter
    always fits its topic; `evi-dlq-cut` says what was left out, with `cut` (e.g. the value)."""
    kept: list[tuple[str, bytes]] = []
    used = truncated = dropped = renamed = 0
    items = headers.items() if isinstance(headers, Mapping) else headers or ()
    for name, value in items:
        if not isinstance(name, str) or name.startswith("evi-dlq-"):
            continue
        raw = value.encode() if isinstance(value, str) else bytes(value or b"")
        if len(raw) > DLQ_VALUE_MAX:
            raw, truncated = raw[:DLQ_VALUE_MAX], truncated + 1
        name_bytes = name.encode("utf-8", "replace")  # bounds are in bytes, as Kafka counts
        if len(name_bytes) > DLQ_NAME_MAX:
            name, renamed = name_bytes[:DLQ_NAME_MAX].decode("utf-8", "ignore"), renamed + 1
            name_bytes = name.encode()
        if used + len(name_bytes) + len(raw) > DLQ_HEADERS_MAX:
            dropped += 1
            continue
        used += len(name_bytes) + len(raw)
        kept.append((name, raw))
    notes = list(cut or [])
    if truncated:
        notes.append(f"{truncated} headers truncated to {DLQ_VALUE_MAX} bytes")
    if renamed:
        notes.append(f"{renamed} header names cut to {DLQ_NAME_MAX} bytes")
    if dropped:
        notes.append(f"{dropped} headers dropped (over {DLQ_HEADERS_MAX} bytes)")
    kept += [
        ("evi-dlq-reason", reason[:64].encode()),
        ("evi-dlq-error", message[:500].encode()),
        ("evi-dlq-origin", f"{topic}[{partition}]@{offset}".encode()),
    ]
    if notes:
        kept.append(("evi-dlq-cut", "; ".join(notes).encode()))
    return kept


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
    doc = asdict(info)
    for name, limit in (("source", MAX_TEXT), ("message", MAX_TEXT), ("producer", MAX_PRODUCER)):
        doc[name] = doc[name][:limit]  # what decode_stream_info accepts
    return json.dumps(doc, separators=(",", ":")).encode()


STREAM_STATUSES = ("live", "reconnecting", "ended", "error")


def decode_stream_info(value: bytes | None) -> StreamInfo:
    """A registry record → StreamInfo; BadResult (one line) for anything off the schema."""
    doc = _json_object(value, "stream registry record")
    kinds = doc.get("kinds")
    if not isinstance(kinds, list) or len(kinds) > 64:
        raise BadResult("field 'kinds' is not a list of at most 64 kinds")
    status = _str(doc, "status", 16)
    if status not in STREAM_STATUSES:
        raise BadResult(f"field 'status' is {status!r}, not one of {', '.join(STREAM_STATUSES)}")
    return StreamInfo(
        stream=_str(doc, "stream", 128, pattern=_STREAM_ID),
        source=_str(doc, "source", MAX_TEXT),
        kinds=[_str({"kind": k}, "kind", 32, pattern=_KIND) for k in kinds],
        fps=_float(doc, "fps", 0.0, 10_000.0),
        width=_int(doc, "width", 0, MAX_SIDE),
        height=_int(doc, "height", 0, MAX_SIDE),
        status=status,
        message=_str(doc, "message", MAX_TEXT, ""),
        producer=_str(doc, "producer", MAX_PRODUCER, ""),
        updated_ms=_int(doc, "updated_ms", 0, MAX_TS_MS, 0),
    )


@dataclass(frozen=True, slots=True)
class InFlight:
    """What a processor had in flight on one frames partition (`evi.inflight.<group>`, the same
    partition number, compacted): written before the frames run, so that the next owner of the
    partition knows which frames were running when a worker died (processors/quarantine.py)."""

    first: int  # lowest offset running
    last: int  # highest offset running
    alone: bool = False  # one frame run by itself, because a worker died with it in flight
    deaths: int = 0  # with `alone`: workers that already died with this frame running alone
    worker: str = ""
    ts_ms: int = 0
    running: bool = True  # False: the frame run alone finished, nothing is running


def encode_inflight(f: InFlight) -> bytes:
    return json.dumps(asdict(f), separators=(",", ":")).encode()


def decode_inflight(value: bytes | None) -> InFlight:
    doc = _json_object(value, "in-flight record")
    first = _int(doc, "first", 0, 2**63 - 1)
    last = _int(doc, "last", first, 2**63 - 1)
    alone = doc.get("alone", False)
    running = doc.get("running", True)
    if not isinstance(alone, bool) or not isinstance(running, bool):
        raise BadResult("fields 'alone' and 'running' are booleans")
    return InFlight(first, last, alone, _int(doc, "deaths", 0, 1_000_000, 0),
                    _str(doc, "worker", 256, ""), _int(doc, "ts_ms", 0, MAX_TS_MS, 0),
                    running)  # fmt: skip
