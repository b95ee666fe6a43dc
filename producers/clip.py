"""The `.evi` clip container: Kafka frame records (timestamp, key, headers, JPEG) in one file.

    file    = MAGIC (8 bytes) · version u16 · flags u16 · meta_len u32 · meta (UTF-8 JSON)
              · crc32(meta) u32 · record* · end record
    record  = body_len u32 · body · crc32(body) u32
    body    = type u8 = 1 · ts_ms i64 · key_len u16 (0xFFFF = no key) · key
              · n_headers u16 · (name_len u16 · name · value_len i32 (-1 = null) · value)*
              · value_len u32 · value
    end     = body_len u32 · type u8 = 2 · frames u64 · crc32 u32

All integers are big-endian; the CRC-32 is zlib's. A file is valid only when every record's
checksum matches, the end record is present, its count equals the records read and nothing
follows it, so a truncated or foreign file is refused before anything is published.
See docs/replay.md.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from evi.errors import BadFrame
from evi.wire import parse_frame

MAGIC = b"\x89EVI\r\n\x1a\n"  # like PNG's: non-ASCII first byte, catches CRLF/text mangling
VERSION = 1
FRAME, END = 1, 2
NO_KEY = 0xFFFF
MAX_META = 1 << 20
MAX_BODY = 64 << 20  # far above any frame a topic accepts (max_message_bytes <= 10 MiB)

_HEAD = struct.Struct(">8sHHI")
_U32 = struct.Struct(">I")
_FRAME_HEAD = struct.Struct(">BqH")
_U16 = struct.Struct(">H")
_I32 = struct.Struct(">i")
_END = struct.Struct(">BQ")

HeaderList = tuple[tuple[str, bytes | None], ...]


class ClipError(ValueError):
    """A clip file that cannot be read; the message names the file and the place."""


@dataclass(frozen=True, slots=True)
class ClipRecord:
    """One Kafka record as it was on the topic."""

    ts_ms: int
    key: bytes | None
    headers: HeaderList
    value: bytes


def encode_record(rec: ClipRecord) -> bytes:
    if rec.key is not None and len(rec.key) >= NO_KEY:
        raise ValueError(f"key of {len(rec.key)} bytes is too long for a clip")
    key = rec.key or b""
    parts = [_FRAME_HEAD.pack(FRAME, rec.ts_ms, NO_KEY if rec.key is None else len(key)), key,
             _U16.pack(len(rec.headers))]
    for name, value in rec.headers:
        raw = name.encode()
        parts += [_U16.pack(len(raw)), raw]
        parts += [_I32.pack(-1)] if value is None else [_I32.pack(len(value)), value]
    parts += [_U32.pack(len(rec.value)), rec.value]
    body = b"".join(parts)
    return _U32.pack(len(body)) + body + _U32.pack(zlib.crc32(body))


def _decode_body(body: bytes, where: str) -> ClipRecord:
    """A frame body whose checksum already matched; ClipError if its fields do not add up."""
    try:
        _, ts_ms, key_len = _FRAME_HEAD.unpack_from(body, 0)
        pos = _FRAME_HEAD.size
        key: bytes | None = None
        if key_len != NO_KEY:
            key, pos = body[pos : pos + key_len], pos + key_len
        (n,), pos = _U16.unpack_from(body, pos), pos + 2
        headers: list[tuple[str, bytes | None]] = []
        for _ in range(n):
            (name_len,), pos = _U16.unpack_from(body, pos), pos + 2
            name, pos = body[pos : pos + name_len].decode(), pos + name_len
            (vlen,), pos = _I32.unpack_from(body, pos), pos + 4
            value: bytes | None = None
            if vlen >= 0:
                value, pos = body[pos : pos + vlen], pos + vlen
            headers.append((name, value))
        (vlen,), pos = _U32.unpack_from(body, pos), pos + 4
        data, pos = body[pos : pos + vlen], pos + vlen
    except (struct.error, UnicodeDecodeError) as e:
        raise ClipError(f"{where}: malformed record ({e})") from None
    if pos != len(body) or len(data) != vlen:
        raise ClipError(f"{where}: malformed record (fields do not fill its {len(body)} bytes)")
    return ClipRecord(ts_ms, key, tuple(headers), data)


def _read_exact(f: BinaryIO, n: int, what: str) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise ClipError(f"truncated: {what} needs {n} bytes, only {len(data)} left")
    return data


def read_meta(f: BinaryIO, name: str) -> dict[str, Any]:
    """Check the file header and return its metadata; leaves `f` at the first record."""
    head = f.read(_HEAD.size)
    if not head:
        raise ClipError(f"{name} is empty, not an evi clip")
    if not head.startswith(MAGIC[: len(head)]) or len(head) < len(MAGIC):
        raise ClipError(f"{name} is not an evi clip (it starts with {head[:8]!r})")
    if len(head) < _HEAD.size:
        raise ClipError(f"{name}: truncated inside the file header")
    _, version, _flags, meta_len = _HEAD.unpack(head)
    if version != VERSION:
        raise ClipError(f"{name}: clip version {version} is not supported (this evi reads "
                        f"version {VERSION})")
    if meta_len > MAX_META:
        raise ClipError(f"{name}: header claims {meta_len} bytes of metadata: corrupted")
    try:
        raw = _read_exact(f, meta_len + 4, "the metadata")
    except ClipError as e:
        raise ClipError(f"{name}: {e}") from None
    meta, (crc,) = raw[:meta_len], _U32.unpack(raw[meta_len:])
    if zlib.crc32(meta) != crc:
        raise ClipError(f"{name}: metadata checksum mismatch: the file is corrupted")
    try:
        doc = json.loads(meta)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ClipError(f"{name}: metadata is not JSON: {e}") from None
    if not isinstance(doc, dict):
        raise ClipError(f"{name}: metadata is not a JSON object")
    return doc


def read_record_at(f: BinaryIO, pos: int, name: str, index: int = 0) -> ClipRecord:
    """The frame record at byte `pos`, checksum verified again (the file may have changed)."""
    f.seek(pos)
    where = f"{name}: record {index} at byte {pos}"
    try:
        (size,) = _U32.unpack(_read_exact(f, 4, "the record length"))
        if size == 0 or size > MAX_BODY:
            raise ClipError(f"record length {size} is out of range: corrupted")
        body = _read_exact(f, size + 4, "the record")
    except ClipError as e:
        raise ClipError(f"{where}: {e}") from None
    (crc,) = _U32.unpack(body[size:])
    if zlib.crc32(body[:size]) != crc:
        raise ClipError(f"{where}: checksum mismatch: the file is corrupted")
    if body[0] != FRAME:
        raise ClipError(f"{where}: not a frame record (type {body[0]})")
    return _decode_body(body[:size], where)


def scan(f: BinaryIO, name: str) -> Iterator[tuple[int, ClipRecord]]:
    """Every (byte position, record) after the header, each checked; the last step checks the
    end record, its count and that nothing follows. Raises ClipError on the first problem."""
    count = 0
    while True:
        pos = f.tell()
        first = f.read(_U32.size + 1)
        if not first:
            raise ClipError(f"{name}: truncated after {count} records: the end record is "
                            "missing (was the recording interrupted?)")
        if len(first) == _U32.size + 1 and first[4] == END:
            f.seek(pos)
            break
        yield pos, read_record_at(f, pos, name, count)
        count += 1
    where = f"{name}: end record at byte {pos}"
    raw = f.read(_U32.size + _END.size + _U32.size)
    if len(raw) < _U32.size + _END.size + _U32.size:
        raise ClipError(f"{where}: truncated")
    (size,) = _U32.unpack_from(raw, 0)
    body, (crc,) = raw[4 : 4 + _END.size], _U32.unpack_from(raw, 4 + _END.size)
    if size != _END.size or zlib.crc32(body) != crc:
        raise ClipError(f"{where}: checksum mismatch: the file is corrupted")
    _, frames = _END.unpack(body)
    if frames != count:
        raise ClipError(f"{where}: says {frames} records, the file holds {count}")
    rest = len(f.read(1 << 16))
    if rest:
        raise ClipError(f"{name}: {rest}+ unexpected bytes after the end record")


def read_clip(path: Path) -> tuple[dict[str, Any], list[ClipRecord]]:
    """Meta and all records of a small clip, in file order (tests and tools; replay streams)."""
    with open(path, "rb") as f:
        meta = read_meta(f, str(path))
        return meta, [rec for _, rec in scan(f, str(path))]


@dataclass(frozen=True, slots=True)
class Entry:
    """Where one frame of a clip is, and its original capture time."""

    ts_ms: int  # original capture time (evi-ts)
    pos: int  # byte position in the clip
    index: int  # record number in the clip
    stream: str


@dataclass
class StreamPlan:
    """The frames of one stream in a clip: where they are and when they were captured."""

    stream: str
    frames: list[Entry] = field(default_factory=list)
    width: int = 0
    height: int = 0

    def fps(self) -> float:
        span = (self.frames[-1].ts_ms - self.frames[0].ts_ms) / 1000 if self.frames else 0.0
        return round((len(self.frames) - 1) / span, 2) if span > 0 else 0.0


def check_clip(
    path: Path, max_bytes: int = 0, only: frozenset[str] = frozenset()
) -> tuple[dict[str, Any], dict[str, StreamPlan]]:
    """Validate the whole clip, container and every frame's headers (`parse_frame`), reading
    only headers into memory; the streams in it (or those in `only`), frames in file order."""
    name = str(path)
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as e:
        raise ClipError(f"cannot read {name}: {e.strerror}") from None
    plans: dict[str, StreamPlan] = {}
    with f:
        meta = read_meta(f, name)
        for index, (pos, rec) in enumerate(scan(f, name)):
            try:
                m = parse_frame(rec.key, rec.value, rec.headers, max_bytes)
            except BadFrame as bad:
                msg = f"{name}: record {index} at byte {pos} is not a valid frame: {bad}"
                raise ClipError(msg) from None
            if only and m.stream not in only:
                continue
            plan = plans.setdefault(m.stream, StreamPlan(m.stream, width=m.width, height=m.height))
            plan.frames.append(Entry(m.ts_ms, pos, index, m.stream))
    if not plans:
        wanted = f" of {', '.join(sorted(only))}" if only else ""
        raise ClipError(f"{name} holds no frames{wanted}")
    return meta, plans



class ClipWriter:
    """Writes `<path>.part`, renamed to `path` only by a successful `close()`."""

    def __init__(self, path: Path, meta: dict[str, Any]) -> None:
        self.path = path
        self.part = path.with_name(path.name + ".part")
        self.count = 0
        self.bytes = 0
        raw = json.dumps(meta, separators=(",", ":"), sort_keys=True).encode()
        self._f: BinaryIO = open(self.part, "wb")  # noqa: SIM115 - closed by close()/abort()
        self._f.write(_HEAD.pack(MAGIC, VERSION, 0, len(raw)) + raw + _U32.pack(zlib.crc32(raw)))

    def write(self, rec: ClipRecord) -> None:
        data = encode_record(rec)
        self._f.write(data)
        self.count += 1
        self.bytes += len(rec.value)

    def close(self) -> None:
        body = _END.pack(END, self.count)
        self._f.write(_U32.pack(len(body)) + body + _U32.pack(zlib.crc32(body)))
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()
        os.replace(self.part, self.path)

    def abort(self) -> None:
        self._f.close()
        self.part.unlink(missing_ok=True)
