from __future__ import annotations

import cv2
import numpy as np
import pytest

from producers.encode import Encoder, target_size
from producers.sample import SampleClip


def test_target_size_keeps_aspect_when_one_side_given() -> None:
    assert target_size(640, 480, None, None) == (640, 480)
    assert target_size(640, 480, 320, None) == (320, 240)
    assert target_size(1280, 720, None, 360) == (640, 360)
    assert target_size(640, 480, 100, 100) == (100, 100)


@pytest.mark.parametrize("backend", ["cv2", "simplejpeg"])
def test_encode_round_trips_close_to_the_source(backend: str) -> None:
    frame = SampleClip().frame(3)
    enc = Encoder(80, backend=backend)  # type: ignore[arg-type]
    jpeg = enc.encode(enc.resize(frame))
    assert jpeg[:3] == b"\xff\xd8\xff"
    back = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert back is not None
    assert back.shape == frame.shape
    assert np.abs(back.astype(int) - frame.astype(int)).mean() < 6


def test_quality_and_resize_shrink_the_jpeg() -> None:
    frame = SampleClip().frame(0)
    big = Encoder(95).encode(frame)
    small = Encoder(40).encode(frame)
    enc = Encoder(80, width=320)
    half = enc.resize(frame)
    assert half.shape == (240, 320, 3)
    assert len(small) < len(big) and len(enc.encode(half)) < len(Encoder(80).encode(frame))
    with pytest.raises(ValueError):
        Encoder(0)
