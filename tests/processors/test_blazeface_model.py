"""BlazeFace through real OpenVINO on real pictures: the face is where we measured it."""

from __future__ import annotations

import cv2
import numpy as np
import openvino as ov
import pytest

from evi.wire import Detection, FrameMeta
from processors.adapters.blazeface import BlazeFaceAdapter
from processors.pipeline import FramePipeline
from tests.fixtures.blazeface_astronaut import SHORT_RANGE_ABOVE_HALF, SHORT_RANGE_ROWS
from tests.fixtures.faces import ASTRONAUT_FACE, astronaut_face_normalised
from tests.fixtures.images import astronaut, sample
from tests.processors.conftest import encode, iou


def detect(pipeline: FramePipeline, image: np.ndarray) -> list[Detection]:
    meta = FrameMeta("cam", 1, 0, image.shape[1], image.shape[0])
    return pipeline.run_sync(meta, encode(image)).detections


def box(d: Detection) -> tuple[float, float, float, float]:
    return (d.x1, d.y1, d.x2, d.y2)


def embed(size: int, at: tuple[int, int], canvas: tuple[int, int] = (640, 480)) -> np.ndarray:
    """The astronaut scaled to size x size, pasted at `at` on a flat blue-grey canvas."""
    image = np.full((canvas[1], canvas[0], 3), (40, 60, 90), np.uint8)
    x, y = at
    image[y : y + size, x : x + size] = cv2.resize(
        astronaut(), (size, size), interpolation=cv2.INTER_AREA
    )
    return image


def embedded_face(size: int, at: tuple[int, int], canvas: tuple[int, int]) -> tuple[float, ...]:
    s = size / 512
    x1, y1, x2, y2 = ASTRONAUT_FACE
    cw, ch = canvas
    x, y = at
    return ((x + x1 * s) / cw, (y + y1 * s) / ch, (x + x2 * s) / cw, (y + y2 * s) / ch)


def test_model_facts(short_pipeline: FramePipeline, full_pipeline: FramePipeline) -> None:
    """What OpenVINO reads from the TFLite files, and what the compiled model takes."""
    core = ov.Core()
    for pipeline, size, n, names in [
        (short_pipeline, 128, 896, ("regressors", "classificators")),
        (full_pipeline, 192, 2304, ("reshaped_regressor_face_4", "reshaped_classifier_face_4")),
    ]:
        model = core.read_model(str(pipeline.runtime.model_path))
        assert model.input().get_partial_shape().to_shape() == [1, size, size, 3]
        assert model.input().get_element_type() == ov.Type.f32
        shapes = {o.get_any_name(): list(o.get_partial_shape().to_shape()) for o in model.outputs}
        assert shapes == {names[0]: [1, n, 16], names[1]: [1, n, 1]}
        # After our PrePostProcessor: u8 NHWC of the same size goes in.
        compiled = pipeline.runtime.compiled
        assert compiled.input().get_element_type() == ov.Type.u8
        assert pipeline.runtime.input_shape == (1, size, size, 3)
        assert pipeline.adapter.input_size == (size, size)
        adapter = pipeline.adapter
        assert isinstance(adapter, BlazeFaceAdapter)
        assert (adapter.regressors, adapter.classificators) == names
        assert pipeline.runtime.num_requests >= 1


def test_short_range_finds_the_astronaut(short_pipeline: FramePipeline) -> None:
    faces = detect(short_pipeline, astronaut())
    assert len(faces) == 1
    assert faces[0].label == "face"
    assert faces[0].score > 0.8
    assert iou(box(faces[0]), astronaut_face_normalised()) >= 0.5


def test_full_range_finds_the_astronaut(full_pipeline: FramePipeline) -> None:
    faces = detect(full_pipeline, astronaut())
    assert len(faces) == 1
    assert faces[0].score > 0.8
    assert iou(box(faces[0]), astronaut_face_normalised()) >= 0.5


@pytest.mark.parametrize(
    ("variant", "size", "at", "canvas"),
    [
        ("short", 480, (160, 0), (640, 480)),  # pads top/bottom, face right of centre
        ("short", 480, (0, 80), (480, 640)),  # portrait: pads left/right
        ("full", 400, (200, 40), (640, 480)),
        ("full", 300, (300, 150), (640, 480)),  # a small face: full range's job
    ],
)
def test_letterboxed_frames_map_back_to_the_frame(
    short_pipeline: FramePipeline,
    full_pipeline: FramePipeline,
    variant: str,
    size: int,
    at: tuple[int, int],
    canvas: tuple[int, int],
) -> None:
    pipeline = short_pipeline if variant == "short" else full_pipeline
    faces = detect(pipeline, embed(size, at, canvas))
    assert len(faces) == 1
    assert iou(box(faces[0]), embedded_face(size, at, canvas)) >= 0.5


@pytest.mark.parametrize("picture", ["coffee", "rocket", "gradient", "black"])
def test_no_face_no_detection(
    short_pipeline: FramePipeline, full_pipeline: FramePipeline, picture: str
) -> None:
    if picture == "gradient":
        ramp = np.linspace(0, 255, 640, dtype=np.float32)
        image = np.stack([np.tile(ramp, (480, 1))] * 3, axis=2).astype(np.uint8)
    elif picture == "black":
        image = np.zeros((480, 640, 3), np.uint8)
    else:
        image = sample(picture)
    assert detect(short_pipeline, image) == []
    assert detect(full_pipeline, image) == []


def test_recorded_tensors_still_match_the_live_model(short_pipeline: FramePipeline) -> None:
    """The fixture in tests/fixtures/blazeface_astronaut.py came from exactly this call."""
    tensor, _ = short_pipeline.adapter.preprocess(astronaut())
    out = short_pipeline.runtime.infer_sync(tensor)
    logits = out["classificators"][0, :, 0]
    regressors = out["regressors"][0]
    assert sorted(np.flatnonzero(logits > 0).tolist()) == SHORT_RANGE_ABOVE_HALF
    for index, (logit, row) in SHORT_RANGE_ROWS.items():
        assert logits[index] == pytest.approx(logit, abs=0.05)
        np.testing.assert_allclose(regressors[index], row, atol=0.05)
