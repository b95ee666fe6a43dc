"""What a JPEG's markers say before any pixel is decoded: size, coding process, scans.

Read in Python so that the decode budget (processors/decode.py) is checked against the file's
own claims before libjpeg-turbo allocates anything, and so that no codec's header helper (whose
exception types vary: simplejpeg's raises KeyError for sampling layouts it cannot name) is on
the path. Only the marker segments are walked, never the entropy-coded data, except that the
scans of a progressive file are counted with one `bytes.count`: 0xFF is byte-stuffed inside
entropy data, so `FF DA` there is always a real SOS marker.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from evi.errors import BadFrame

SOI = b"\xff\xd8"
SOS = 0xDA
EOI = 0xD9
# SOFn markers; 0xC4 (DHT), 0xC8 (JPG) and 0xCC (DAC) share the range but are not frames.
SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
SUPPORTED = {0xC0: "baseline", 0xC1: "extended", 0xC2: "progressive"}
STANDALONE = frozenset(range(0xD0, 0xD8)) | {0x01}  # RSTn and TEM carry no length


@dataclass(frozen=True, slots=True)
class JpegHeader:
    width: int
    height: int
    components: int
    process: str  # baseline | extended | progressive
    scans: int  # SOS markers in the whole file

    @property
    def pixels(self) -> int:
        return self.width * self.height

    @property
    def progressive(self) -> bool:
        return self.process == "progressive"


def read_header(jpeg: bytes) -> JpegHeader:
    """The frame header of `jpeg`; BadFrame for anything libjpeg-turbo must not be asked to
    decode: not a JPEG, no frame header before the first scan, a coding process other than
    8-bit Huffman baseline/extended/progressive, 0 or >4 components, sampling factors
    outside 1..4, or a zero size (the DNL form)."""
    if not jpeg.startswith(SOI):
        raise BadFrame("corrupt-jpeg", "no JPEG start-of-image marker")
    pos, n = 2, len(jpeg)
    sof: JpegHeader | None = None
    while pos < n:
        if jpeg[pos] != 0xFF:
            raise BadFrame("corrupt-jpeg", f"no marker at byte {pos} of the header")
        while pos < n and jpeg[pos] == 0xFF:  # fill bytes may precede a marker
            pos += 1
        if pos >= n:
            break
        marker = jpeg[pos]
        pos += 1
        if marker in STANDALONE:
            continue
        if marker in (EOI, 0xD8):
            raise BadFrame("corrupt-jpeg", f"marker FF{marker:02X} before the first scan")
        if pos + 2 > n:
            break
        (length,) = struct.unpack_from(">H", jpeg, pos)
        if length < 2 or pos + length > n:
            raise BadFrame("corrupt-jpeg", f"segment FF{marker:02X} has a bad length {length}")
        if marker in SOF_MARKERS:
            if sof is not None:
                raise BadFrame("corrupt-jpeg", "more than one frame header")
            sof = _frame(marker, jpeg[pos + 2 : pos + length])
        elif marker == SOS:
            if sof is None:
                raise BadFrame("corrupt-jpeg", "a scan before the frame header")
            # Only a progressive file's scans each pass over the whole image; a baseline one has
            # one scan per component at most (libjpeg refuses more), and counting costs ~1 ns a
            # byte, which the hot path of ordinary frames is spared.
            scans = jpeg.count(b"\xff\xda", pos - 2) if sof.progressive else 1
            return JpegHeader(sof.width, sof.height, sof.components, sof.process, scans)
        pos += length
    raise BadFrame("corrupt-jpeg", "the JPEG ends before its first scan")


def _frame(marker: int, body: bytes) -> JpegHeader:
    process = SUPPORTED.get(marker)
    if process is None:
        raise BadFrame("unsupported-jpeg", f"JPEG coding process SOF{marker - 0xC0} "
                       "(lossless, hierarchical or arithmetic) is not supported")  # fmt: skip
    if len(body) < 6:
        raise BadFrame("corrupt-jpeg", "frame header is too short")
    precision, height, width, ncomp = struct.unpack_from(">BHHB", body)
    if precision != 8:
        raise BadFrame("unsupported-jpeg", f"{precision}-bit samples are not supported")
    if width == 0 or height == 0:
        raise BadFrame("unsupported-jpeg", f"frame size {width}x{height} (DNL) is not supported")
    if ncomp not in (1, 3) or len(body) < 6 + 3 * ncomp:
        raise BadFrame("unsupported-jpeg", f"{ncomp} colour components (want 1 or 3)")
    for i in range(ncomp):
        factors = body[6 + 3 * i + 1]
        if not (1 <= factors >> 4 <= 4 and 1 <= factors & 0x0F <= 4):
            raise BadFrame("corrupt-jpeg", f"sampling factors {factors:#04x} of component {i}")
    return JpegHeader(width, height, ncomp, process, 0)


@dataclass(frozen=True, slots=True)
class DecodeBudget:
    """The most work one frame may cost to decode, checked on its own header before decoding.

    A baseline JPEG's cost grows with its pixels (the entropy data of every block is read even
    when the DCT scaling skips most of the inverse DCT); a progressive one also buffers every
    coefficient of the whole image (~6 bytes a pixel) and passes over it once per scan, which
    is why an 8192² progressive frame of under 1 MiB costs ~0.8 s and ~400 MiB. Models here
    take 128–640 px inputs, so the defaults admit 4K video and refuse far beyond it
    (docs/reliability.md has the measurements)."""

    max_pixels: int = 4096 * 4096
    max_progressive_pixels: int = 2048 * 2048
    max_scans: int = 32

    def check(self, h: JpegHeader) -> None:
        if h.pixels > self.max_pixels:
            raise BadFrame("decode-budget", f"JPEG is {h.width}x{h.height}: over the pixel bound "
                           f"max_pixels={self.max_pixels}")  # fmt: skip
        if h.progressive and h.pixels > self.max_progressive_pixels:
            bound = self.max_progressive_pixels
            raise BadFrame("decode-budget", f"progressive JPEG is {h.width}x{h.height}: over the "
                           f"bound max_progressive_pixels={bound}")  # fmt: skip
        if h.scans > self.max_scans:
            raise BadFrame("decode-budget", f"JPEG has {h.scans} scans: over the bound "
                           f"max_scans={self.max_scans}")  # fmt: skip
