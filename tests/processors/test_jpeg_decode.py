"""JPEG decoding: DCT-domain downscale sizes, pixels, and bad input as BadFrame."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from evi.errors import BadFrame
from processors.decode import decode_jpeg, decode_jpeg_cv2, fit_size
from tests.fixtures.images import astronaut, resized
from tests.processors.conftest import encode


@pytest.fixture(scope="module")
def astronaut_jpeg() -> bytes:
    return encode(astronaut())


def frame(w: int, h: int) -> bytes:
    return encode(resized(astronaut(), (w, h)), 80)


def test_full_size_decode_matches_the_source(astronaut_jpeg: bytes) -> None:
    image = decode_jpeg(astronaut_jpeg)
    assert image.shape == (512, 512, 3) and image.dtype == np.uint8
    diff = np.abs(image.astype(int) - astronaut().astype(int))
    assert diff.mean() < 3  # q90 JPEG, RGB order kept (a BGR swap would be ~40)


@pytest.mark.parametrize(
    ("size", "target", "decoded"),
    [
        ((512, 512), (128, 128), (128, 128)),  # 1/4: exactly the target
        ((512, 512), (192, 192), (192, 192)),  # 3/8
        ((640, 480), (128, 128), (160, 120)),  # 1/4: fit is 128x96, 1/8 would be 80 wide
        ((1280, 720), (128, 128), (160, 90)),  # 1/8
        ((1280, 720), (192, 192), (320, 180)),  # 2/8: 1/8 is 160 wide, the fit 192
        ((100, 60), (128, 128), (100, 60)),  # never upscaled
    ],
)
def test_dct_downscale_is_the_smallest_covering_the_fit(
    size: tuple[int, int], target: tuple[int, int], decoded: tuple[int, int]
) -> None:
    image = decode_jpeg(frame(*size), target)
    assert (image.shape[1], image.shape[0]) == decoded
    fit = fit_size(size, target)
    assert image.shape[1] >= min(fit[0], size[0]) and image.shape[0] >= min(fit[1], size[1])


def test_downscaled_pixels_match_a_resize(astronaut_jpeg: bytes) -> None:
    small = decode_jpeg(astronaut_jpeg, (128, 128))
    ref = cv2.resize(astronaut(), (128, 128), interpolation=cv2.INTER_AREA)
    assert np.abs(small.astype(int) - ref.astype(int)).mean() < 4


@pytest.mark.parametrize(
    ("name", "cut"),
    [
        ("empty", lambda j: b""),
        ("half", lambda j: j[: len(j) // 2]),
        ("no-eoi", lambda j: j[:-2]),
        ("header-only", lambda j: j[:200]),
        ("soi-then-junk", lambda j: b"\xff\xd8\xff" + bytes(1000)),
        ("zeroed-scan", lambda j: j[:3000] + bytes(2000) + j[5000:]),
        ("not-jpeg", lambda j: b"\x89PNG\r\n\x1a\n" + j[8:]),
    ],
)
def test_bad_jpegs_are_bad_frames(astronaut_jpeg: bytes, name: str, cut: object) -> None:
    data = cut(astronaut_jpeg)  # type: ignore[operator]
    for target in (None, (128, 128)):
        with pytest.raises(BadFrame) as e:
            decode_jpeg(data, target)
        assert e.value.reason == "corrupt-jpeg", name


def test_cv2_fallback_decodes_and_refuses_truncation(astronaut_jpeg: bytes) -> None:
    image = decode_jpeg_cv2(astronaut_jpeg)
    assert image.shape == (512, 512, 3)
    assert np.abs(image.astype(int) - decode_jpeg(astronaut_jpeg).astype(int)).mean() < 1
    for bad in (astronaut_jpeg[: len(astronaut_jpeg) // 2], b"\xff\xd8\xff\xd9"):
        with pytest.raises(BadFrame) as e:
            decode_jpeg_cv2(bad)
        assert e.value.reason == "corrupt-jpeg"
