"""The JPEG frame header read before decoding, and the decode budget checked on it."""

from __future__ import annotations

import struct

import cv2
import numpy as np
import pytest
import simplejpeg

from evi.errors import BadFrame
from processors.decode import decode_jpeg
from processors.jpeg_header import DecodeBudget, read_header

IMAGE = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (48, 1))[..., None].repeat(3, 2)


def cv2_jpeg(image: np.ndarray, *params: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", image, list(params))
    assert ok
    return bytes(buf.tobytes())


def test_baseline_and_progressive_headers() -> None:
    base = read_header(simplejpeg.encode_jpeg(np.ascontiguousarray(IMAGE), 80, "RGB"))
    assert (base.width, base.height, base.components, base.process, base.scans) == (
        64, 48, 3, "baseline", 1)
    prog = read_header(cv2_jpeg(IMAGE, cv2.IMWRITE_JPEG_PROGRESSIVE, 1))
    assert prog.process == "progressive" and prog.scans >= 6
    gray = read_header(cv2_jpeg(IMAGE[..., 0]))
    assert gray.components == 1


def sof_patched(offset: int, value: bytes) -> bytes:
    data = bytearray(simplejpeg.encode_jpeg(np.ascontiguousarray(IMAGE), 80, "RGB", "444"))
    at = data.index(b"\xff\xc0") + 4  # after marker and length: precision, height, width, …
    data[at + offset : at + offset + len(value)] = value
    return bytes(data)


@pytest.mark.parametrize(("data", "reason"), [
    (sof_patched(0, b"\x0c"), "unsupported-jpeg"),  # 12-bit
    (sof_patched(1, struct.pack(">H", 0)), "unsupported-jpeg"),  # height 0: DNL
    (sof_patched(5, b"\x04"), "unsupported-jpeg"),  # 4 components (CMYK)
    (sof_patched(7, b"\x50"), "corrupt-jpeg"),  # sampling 5x0
    (sof_patched(7, b"\x00"), "corrupt-jpeg"),
    (b"\xff\xd8\xff\xda\x00\x02", "corrupt-jpeg"),  # a scan before the frame header
    (b"\xff\xd8\xff\xe0\xff\xff", "corrupt-jpeg"),  # a length past the end
    (b"\xff\xd8", "corrupt-jpeg"),
    (b"\xff\xd8\xff\xc3\x00\x0b\x08\x00\x10\x00\x10\x01\x01\x11\x00", "unsupported-jpeg"),
])  # fmt: skip
def test_headers_a_codec_must_not_see_are_refused_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(BadFrame) as e:
        read_header(data)
    assert e.value.reason == reason


def test_an_unusual_sampling_layout_is_a_bad_frame_not_a_key_error() -> None:
    data = sof_patched(7, b"\x14")  # luma 1x4: libjpeg-turbo's 4:4:1, which simplejpeg can't name
    with pytest.raises(BadFrame) as e:
        decode_jpeg(data, (128, 128))
    assert e.value.reason == "corrupt-jpeg"


def test_the_budget_names_the_bound_it_refuses() -> None:
    prog = cv2_jpeg(IMAGE, cv2.IMWRITE_JPEG_PROGRESSIVE, 1)
    budget = DecodeBudget(max_pixels=10_000, max_progressive_pixels=1000, max_scans=100)
    with pytest.raises(BadFrame, match="max_progressive_pixels=1000") as e:
        decode_jpeg(prog, (128, 128), budget=budget)
    assert e.value.reason == "decode-budget"
    with pytest.raises(BadFrame, match="max_scans=3"):
        decode_jpeg(prog, budget=DecodeBudget(max_scans=3))
    with pytest.raises(BadFrame, match="max_pixels=100"):
        decode_jpeg(cv2_jpeg(IMAGE), budget=DecodeBudget(max_pixels=100))
    assert decode_jpeg(prog, (32, 32)).shape[2] == 3  # within the default budget


def test_the_progressive_bomb_is_refused_by_default() -> None:
    image = np.zeros((8192, 8192, 3), np.uint8)
    image[::64] = 200
    bomb = cv2_jpeg(image, cv2.IMWRITE_JPEG_PROGRESSIVE, 1)
    with pytest.raises(BadFrame) as e:
        decode_jpeg(bomb, (128, 128))
    assert e.value.reason == "decode-budget" and "8192x8192" in e.value.message
