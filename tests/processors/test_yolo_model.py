"""YOLO through real OpenVINO: generated v5- and v8-style IR heads, loaded by the Runtime and the
FramePipeline as an exported .onnx or .xml would be."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from evi.wire import Detection, FrameMeta
from processors.adapters.yolo import YoloAdapter
from processors.models import YoloConfig
from processors.pipeline import FramePipeline
from tests.fixtures.ov_models import image_model, yolo_v5_head, yolo_v8_head
from tests.processors.conftest import encode

SIZE = (64, 64)
LABELS = ["red-thing", "blue-thing"]
# Candidate 0 (class 0) at the centre, candidate 1 (class 1) in the top-left corner; their
# class scores are 0.9 x the red mean and 0.8 x the blue mean of the input (0..1 after /255).
BOXES = [(32, 32, 32, 32), (8, 8, 16, 16)]


def head(version: str) -> tuple[np.ndarray, np.ndarray]:
    if version == "v5":
        base = yolo_v5_head([(*BOXES[0], 1.0, 0, 0.0), (*BOXES[1], 1.0, 1, 0.0)], classes=2)
        w = np.zeros((3, *base.shape), np.float32)
        w[0, 0, 0, 5], w[2, 0, 1, 6] = 0.9, 0.8
    else:
        base = yolo_v8_head([(*BOXES[0], 0, 0.0), (*BOXES[1], 1, 0.0)], classes=2)
        w = np.zeros((3, *base.shape), np.float32)
        w[0, 0, 4, 0], w[2, 0, 5, 1] = 0.9, 0.8
    return base, w


@pytest.fixture(scope="module", params=["v5", "v8"])
def yolo(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, FramePipeline]]:
    version = request.param
    d = tmp_path_factory.mktemp(f"yolo-{version}")
    path = image_model(d / f"{version}.xml", {"output0": head(version)}, size=SIZE)
    config = YoloConfig(name=f"yolo-{version}", path=path, labels=LABELS)
    p = FramePipeline.create("vehicle", config, d)
    yield version, p
    p.close()


def detect(p: FramePipeline, image: np.ndarray) -> list[Detection]:
    meta = FrameMeta("cam", 1, 0, image.shape[1], image.shape[0])
    return p.run_sync(meta, encode(image, 95)).detections


def flat(rgb: tuple[int, int, int], w: int, h: int) -> np.ndarray:
    return np.full((h, w, 3), rgb, np.uint8)


def test_version_is_read_from_the_compiled_head(yolo: tuple[str, FramePipeline]) -> None:
    version, p = yolo
    adapter = p.adapter
    assert isinstance(adapter, YoloAdapter)
    assert (adapter.version, adapter.classes) == (version, 2)
    assert p.runtime.input_shape == (1, 64, 64, 3)


def test_rgb_scaled_to_one_and_letterboxed(yolo: tuple[str, FramePipeline]) -> None:
    """A red 128x64 frame, letterboxed to 64x32 at y 16 between black bars: RGB order and /255
    give the red candidate 0.9 x 0.5 (half the tensor is red), and its tensor box 16..48 maps to
    the frame's whole height."""
    _, p = yolo
    found = detect(p, flat((255, 0, 0), 128, 64))
    assert [d.label for d in found] == ["red-thing"]
    d = found[0]
    assert d.score == pytest.approx(0.45, abs=0.01)
    assert (d.x1, d.y1, d.x2, d.y2) == pytest.approx((0.25, 0.0, 0.75, 1.0), abs=1e-6)


def test_the_other_class_on_a_blue_square_frame(yolo: tuple[str, FramePipeline]) -> None:
    _, p = yolo
    found = detect(p, flat((0, 0, 255), 64, 64))
    assert [(d.label, round(d.score, 1)) for d in found] == [("blue-thing", 0.8)]
    d = found[0]
    assert (d.x1, d.y1, d.x2, d.y2) == pytest.approx((0.0, 0.0, 0.25, 0.25), abs=1e-6)
    assert detect(p, flat((0, 255, 0), 64, 64)) == []  # green: both scores 0
