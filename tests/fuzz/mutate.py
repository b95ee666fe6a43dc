"""Mutations of JPEG files, chosen by a `random.Random`: bit flips, interesting bytes, marker
segments copied, deleted or duplicated, length fields edited, frame header fields set to edge
values, truncation, splicing two files. Each case is made from its own RNG, seeded by (run seed,
case number), so any one case can be made again alone."""

from __future__ import annotations

import random
import struct
from collections.abc import Callable, Sequence

from tests.fuzz import jpegbits

INTERESTING = (0x00, 0xFF, 0x7F, 0x80, 0x01, 0xFE, 0x10, 0x11, 0x22, 0x41)
EDGE_16 = (0, 1, 2, 3, 7, 8, 9, 255, 256, 4096, 8192, 16383, 32768, 65534, 65535)


def _header_end(data: bytes) -> int:
    """Where the entropy data of the first scan begins (the mutations favour the header)."""
    for s in jpegbits.segments(data):
        if s.marker == jpegbits.SOS and s.end - s.start >= 4:
            (length,) = struct.unpack_from(">H", data, s.start + 2)
            return min(s.end, s.start + 2 + int(length))
    return len(data)


def _pos(rng: random.Random, data: bytes) -> int:
    end = _header_end(data) if rng.random() < 0.6 else len(data)
    return rng.randrange(max(1, end))


def bit_flips(rng: random.Random, data: bytes, other: bytes) -> bytes:
    if not data:
        return data
    b = bytearray(data)
    for _ in range(rng.choice((1, 1, 2, 4, 8))):
        b[_pos(rng, data)] ^= 1 << rng.randrange(8)
    return bytes(b)


def interesting_bytes(rng: random.Random, data: bytes, other: bytes) -> bytes:
    if not data:
        return data
    b = bytearray(data)
    for _ in range(rng.choice((1, 1, 2, 3))):
        b[_pos(rng, data)] = rng.choice(INTERESTING)
    return bytes(b)


def copy_segment(rng: random.Random, data: bytes, other: bytes) -> bytes:
    """A segment of this or the other file inserted at a segment boundary of this one."""
    src = rng.choice((data, other))
    segs, here = jpegbits.segments(src), jpegbits.segments(data)
    if not segs or not here:
        return data
    s = rng.choice(segs)
    at = rng.choice(here).start
    return data[:at] + src[s.start : s.end][:65536] + data[at:]


def delete_segment(rng: random.Random, data: bytes, other: bytes) -> bytes:
    segs = jpegbits.segments(data)
    if not segs:
        return data
    s = rng.choice(segs)
    return data[: s.start] + data[s.end :]


def duplicate_scan(rng: random.Random, data: bytes, other: bytes) -> bytes:
    scans = [s for s in jpegbits.segments(data) if s.marker == jpegbits.SOS]
    if not scans:
        return data
    s = rng.choice(scans)
    return data[: s.end] + data[s.start : s.end] * rng.choice((1, 2, 8, 40)) + data[s.end :]


def edit_length(rng: random.Random, data: bytes, other: bytes) -> bytes:
    segs = [s for s in jpegbits.segments(data) if s.has_length and s.end - s.start >= 4]
    if not segs:
        return data
    s = rng.choice(segs)
    (length,) = struct.unpack_from(">H", data, s.start + 2)
    new = rng.choice((0, 1, 2, 3, length - 1, length + 1, length * 2, 0xFFFF, rng.randrange(65536)))
    b = bytearray(data)
    struct.pack_into(">H", b, s.start + 2, new & 0xFFFF)
    return bytes(b)


def edit_frame_header(rng: random.Random, data: bytes, other: bytes) -> bytes:
    """A field of the frame header set to an edge value: size, precision, sampling, marker."""
    s = jpegbits.sof(data)
    if s is None or s.end - s.start < 10:
        return data
    b = bytearray(data)
    body = s.start + 4
    what = rng.randrange(6)
    if what == 0:
        struct.pack_into(">H", b, body + 1 + 2 * rng.randrange(2), rng.choice(EDGE_16))
    elif what == 1:
        b[body] = rng.choice((0, 1, 7, 8, 12, 16, 255))
    elif what == 2 and body + 6 + 3 * b[body + 5] <= s.end:  # a component's sampling factors
        c = rng.randrange(max(1, b[body + 5]))
        if body + 7 + 3 * c < len(b):
            b[body + 7 + 3 * c] = (rng.randrange(16) << 4) | rng.randrange(16)
    elif what == 3:
        b[body + 5] = rng.choice((0, 1, 2, 3, 4, 5, 255))  # component count
    elif what == 4:
        b[s.start + 1] = rng.choice(sorted(jpegbits.SOF_MARKERS))
    else:
        b[body + 8 if body + 8 < s.end else body] = rng.choice(INTERESTING)  # a table id
    return bytes(b)


def truncate(rng: random.Random, data: bytes, other: bytes) -> bytes:
    return data[: rng.randrange(len(data) + 1)]


def splice(rng: random.Random, data: bytes, other: bytes) -> bytes:
    """A head of this file and a tail of the other, cut at segment boundaries or anywhere."""
    if rng.random() < 0.5:
        a = [s.start for s in jpegbits.segments(data)] or [len(data)]
        b = [s.start for s in jpegbits.segments(other)] or [0]
        return data[: rng.choice(a)] + other[rng.choice(b) :]
    return data[: rng.randrange(len(data) + 1)] + other[rng.randrange(len(other) + 1) :]


def append_garbage(rng: random.Random, data: bytes, other: bytes) -> bytes:
    tail = rng.choice((b"\x00" * 16, b"\xff" * 16, b"\xff\xd9", b"\xff\xd8", rng.randbytes(32)))
    return data + tail


Mutation = Callable[[random.Random, bytes, bytes], bytes]
MUTATIONS: dict[str, Mutation] = {
    "bit-flips": bit_flips,
    "interesting-bytes": interesting_bytes,
    "copy-segment": copy_segment,
    "delete-segment": delete_segment,
    "duplicate-scan": duplicate_scan,
    "edit-length": edit_length,
    "edit-frame-header": edit_frame_header,
    "truncate": truncate,
    "splice": splice,
    "append-garbage": append_garbage,
}
NAMES = sorted(MUTATIONS)


def case_rng(seed: int, case: int) -> random.Random:
    return random.Random(seed * 1_000_003 + case)


def weights(corpus: Sequence[bytes]) -> list[float]:
    """Cumulative choice weights: small files mostly (they mutate and decode fastest)."""
    total, out = 0.0, []
    for data in corpus:
        total += 1 / (1 + len(data) / 2000)
        out.append(total)
    return out


def make_case(
    rng: random.Random, corpus: Sequence[bytes], cum_weights: Sequence[float]
) -> tuple[bytes, list[str]]:
    """One input: a corpus file with 1 to 4 stacked mutations, and the mutations' names."""
    data, other = rng.choices(corpus, cum_weights=cum_weights, k=2)
    steps = [rng.choice(NAMES) for _ in range(rng.choice((1, 1, 1, 2, 2, 3, 4)))]
    for name in steps:
        data = MUTATIONS[name](rng, data, other)
    return data, steps
