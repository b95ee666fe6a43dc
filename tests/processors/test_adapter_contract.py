"""The contract every registered adapter keeps, checked on a generated model per family:
configure (through the real Runtime) + bind + preprocess + postprocess give a list of Detections
with boxes inside the frame and scores best first. A new family without a model here fails."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from evi.wire import Detection
from processors.adapters import ADAPTERS, create_adapter
from processors.models import (
    BlazeFaceConfig,
    ClassifyConfig,
    ModelConfig,
    SsdConfig,
    YoloConfig,
)
from processors.runtime import Runtime
from tests.fixtures.ov_models import image_model, ssd_rows, yolo_v8_head


def blazeface(d: Path) -> ModelConfig:
    """BlazeFace short's outputs: 896 anchors, three of them confident, unsorted."""
    regressors = np.zeros((1, 896, 16), np.float32)
    logits = np.full((1, 896, 1), -50.0, np.float32)
    for anchor, logit, size in ((100, 1.0, 20.0), (500, 4.0, 30.0), (880, 2.5, 60.0)):
        regressors[0, anchor, 2:4] = size
        logits[0, anchor, 0] = logit
    outputs = {"regressors": (regressors, None), "classificators": (logits, None)}
    path = image_model(d / "blazeface.xml", outputs, size=(128, 128), layout="NHWC")
    return BlazeFaceConfig(name="contract", path=path)


def ssd(d: Path) -> ModelConfig:
    rows = ssd_rows(
        (0, 1, 0.6, 0.1, 0.1, 0.4, 0.5),
        (0, 2, 0.9, 0.5, 0.5, 0.9, 0.9),
        (0, 1, 0.75, -0.05, 0.2, 0.3, 1.1),  # out of range: clipped
    )
    path = image_model(d / "ssd.xml", {"detection_out": (rows, None)}, size=(64, 48))
    return SsdConfig(name="contract", path=path, labels={1: "a", 2: "b"})


def yolo(d: Path) -> ModelConfig:
    head = yolo_v8_head(
        [(16, 16, 16, 16, 0, 0.5), (40, 40, 20, 20, 1, 0.9), (60, 10, 30, 30, 2, 0.7)], classes=3
    )
    path = image_model(d / "yolo.xml", {"output0": (head, None)}, size=(64, 64))
    return YoloConfig(name="contract", path=path)


def classify(d: Path) -> ModelConfig:
    logits = np.array([[0.5, 2.0, -1.0, 1.0, 0.0]], np.float32)
    path = image_model(d / "cls.xml", {"logits": (logits, None)}, size=(32, 32))
    return ClassifyConfig(name="contract", path=path, softmax=True, top_k=3)


MODELS: dict[str, tuple[Callable[[Path], ModelConfig], int]] = {
    "blazeface": (blazeface, 3),
    "ssd": (ssd, 3),
    "yolo": (yolo, 3),
    "classify": (classify, 3),
}  # family → (generated model, detections it yields)


def test_every_registered_adapter_has_a_generated_model() -> None:
    assert set(MODELS) == set(ADAPTERS)


@pytest.mark.parametrize("family", sorted(ADAPTERS))
@pytest.mark.parametrize("frame", [(640, 480), (300, 500), (128, 128)])
def test_adapter_contract(tmp_path: Path, family: str, frame: tuple[int, int]) -> None:
    make, expected = MODELS[family]
    config = make(tmp_path)
    assert config.family == family
    adapter = create_adapter(config)
    assert type(adapter) is ADAPTERS[family]
    runtime = Runtime(config.path, configure=adapter.configure)  # configure → bind
    try:
        w, h = adapter.input_size
        assert runtime.input_shape == (1, h, w, 3)
        image = np.random.default_rng(3).integers(0, 256, (frame[1], frame[0], 3), np.uint8)
        tensor, prep = adapter.preprocess(image)
        assert tensor.shape == (1, h, w, 3) and tensor.dtype == np.uint8
        found = adapter.postprocess(runtime.infer_sync(tensor), prep)
    finally:
        runtime.close()
    assert isinstance(found, list) and len(found) == expected
    assert all(isinstance(d, Detection) and isinstance(d.label, str) for d in found)
    for d in found:
        assert 0.0 <= d.x1 < d.x2 <= 1.0 and 0.0 <= d.y1 < d.y2 <= 1.0, d
        assert 0.0 <= d.score <= 1.0
        assert all(isinstance(v, float) for v in (d.score, d.x1, d.y1, d.x2, d.y2))
    scores = [d.score for d in found]
    assert scores == sorted(scores, reverse=True)
