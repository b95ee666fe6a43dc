"""Just enough of the JPEG file layout to build and mutate test inputs: the marker segments
(a scan's segment runs to the next marker, entropy-coded data included) and the frame header's
fields. Written for the tests, independently of processors/ (which it checks)."""

from __future__ import annotations

import struct
from dataclasses import dataclass

SOI, EOI, SOS, DNL = 0xD8, 0xD9, 0xDA, 0xDC
SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
STANDALONE = frozenset(range(0xD0, 0xD8)) | {0x01, SOI, EOI}


@dataclass(frozen=True, slots=True)
class Segment:
    start: int
    end: int  # exclusive; for a scan, where the next marker begins
    marker: int

    @property
    def has_length(self) -> bool:
        return self.marker not in STANDALONE


def segments(data: bytes) -> list[Segment]:
    """The file's segments in order, as far as they can be followed (mutated files stop early)."""
    out: list[Segment] = []
    pos, n = 0, len(data)
    while pos + 1 < n:
        if data[pos] != 0xFF:
            break
        marker = data[pos + 1]
        if marker == 0xFF:  # a fill byte
            pos += 1
            continue
        if marker in STANDALONE:
            out.append(Segment(pos, pos + 2, marker))
            pos += 2
            if marker == EOI:
                break
            continue
        if pos + 4 > n:
            break
        (length,) = struct.unpack_from(">H", data, pos + 2)
        end = min(n, pos + 2 + max(length, 2))
        if marker == SOS:  # entropy data: up to a marker that is not a stuffed 0 or an RSTn
            end = _scan_end(data, end)
        out.append(Segment(pos, end, marker))
        pos = end
    return out


def _scan_end(data: bytes, pos: int) -> int:
    n = len(data)
    while True:
        pos = data.find(b"\xff", pos)
        if pos < 0 or pos + 1 >= n:
            return n
        nxt = data[pos + 1]
        if nxt not in (0x00, 0xFF) and not 0xD0 <= nxt <= 0xD7:
            return pos
        pos += 1


def sof(data: bytes) -> Segment | None:
    return next((s for s in segments(data) if s.marker in SOF_MARKERS), None)


def patch_sof(
    data: bytes,
    *,
    precision: int | None = None,
    height: int | None = None,
    width: int | None = None,
    sampling: list[tuple[int, int]] | None = None,
    marker: int | None = None,
) -> bytes:
    """`data` with fields of its frame header replaced (each component's h, v sampling factors
    from `sampling`, in order)."""
    seg = sof(data)
    assert seg is not None, "no frame header"
    b = bytearray(data)
    body = seg.start + 4  # after FF Cn and the length
    if marker is not None:
        b[seg.start + 1] = marker
    if precision is not None:
        b[body] = precision
    if height is not None:
        struct.pack_into(">H", b, body + 1, height)
    if width is not None:
        struct.pack_into(">H", b, body + 3, width)
    for i, (h, v) in enumerate(sampling or []):
        b[body + 6 + 3 * i + 1] = (h << 4) | v
    return bytes(b)


def segment_bytes(data: bytes, marker: int) -> list[bytes]:
    return [data[s.start : s.end] for s in segments(data) if s.marker == marker]


def with_scans(data: bytes, times: int) -> bytes:
    """`data` with its scans (from the first SOS up to EOI) repeated `times` times."""
    segs = segments(data)
    scans = [s for s in segs if s.marker == SOS]
    if not scans:
        return data
    first, last = scans[0].start, scans[-1].end
    return data[:first] + data[first:last] * times + data[last:]
