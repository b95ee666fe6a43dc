from __future__ import annotations

import cv2
import numpy as np
import pytest

import producers.encode as encode
from evi.errors import ConfigError
from evi.settings import load
from producers.encode import BACKENDS, Encoder, target_size, unavailable
from producers.sample import SampleClip
from producers.settings import ProducerSettings


def test_target_size_keeps_aspect_when_one_side_given() -> None:
    assert target_size(640, 480, None, None) == (640, 480)
    assert target_size(640, 480, 320, None) == (320, 240)
    assert target_size(1280, 720, None, 360) == (640, 360)
    assert target_size(640, 480, 100, 100) == (100, 100)


@pytest.mark.parametrize("backend", BACKENDS)
def test_encode_round_trips_close_to_the_source(backend: str) -> None:
    # turbojpeg is optional for users, not here: `make test` installs libturbojpeg
    # (.ci/system-deps) and PyTurboJPEG (dev extras), so every backend is tested.
    assert not unavailable(backend), unavailable(backend)
    frame = SampleClip().frame(3)
    enc = Encoder(80, backend=backend)  # type: ignore[arg-type]
    jpeg = enc.encode(enc.resize(frame))
    assert isinstance(jpeg, bytes) and jpeg[:3] == b"\xff\xd8\xff"
    assert b"\xff\xc0\x00\x11\x08\x01\xe0\x02\x80\x03\x01\x22" in jpeg  # 640x480, Y 2x2: 4:2:0
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


def test_encoders_agree_on_size_within_a_few_percent() -> None:
    frame = SampleClip(1280, 720).frame(5)
    sizes = {b: len(Encoder(80, backend=b).encode(frame)) for b in BACKENDS if not unavailable(b)}
    assert len(sizes) >= 2
    assert max(sizes.values()) / min(sizes.values()) < 1.05, sizes  # same quality tables


def test_missing_turbojpeg_is_a_config_error_that_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_module() -> None:
        raise ImportError("No module named 'turbojpeg'")

    monkeypatch.setattr(encode, "_turbojpeg", no_module)
    assert "pip install 'PyTurboJPEG<2'" in unavailable("turbojpeg")
    assert unavailable("simplejpeg") == "" and unavailable("cv2") == ""
    with pytest.raises(ConfigError, match=r"publisher.encoder: .*pip install 'PyTurboJPEG<2'"):
        load(ProducerSettings, publisher={"encoder": "turbojpeg"})
    with pytest.raises(ValueError, match="PyTurboJPEG"):
        Encoder(80, backend="turbojpeg")
