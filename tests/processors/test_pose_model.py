"""MediaPipe's pose detector through real OpenVINO and the real pipeline (JPEG in, detections
out) on pictures with one person each: the person, its box and keypoints are where we measured."""

from __future__ import annotations

import numpy as np
import openvino as ov
import pytest

from evi.wire import Detection, FrameMeta
from processors.adapters.blazeface import BlazeFaceAdapter
from processors.pipeline import FramePipeline
from tests.fixtures.images import rgb_sample
from tests.fixtures.people import EYES_Y, MID_SHOULDER, PICTURE_SIZE, person_normalised
from tests.processors.conftest import encode, iou


def picture(name: str) -> np.ndarray:
    if name == "noise":
        return np.random.default_rng(16).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    return rgb_sample(name)


def detect(pipeline: FramePipeline, image: np.ndarray) -> list[Detection]:
    meta = FrameMeta("cam", 1, 0, image.shape[1], image.shape[0])
    return pipeline.run_sync(meta, encode(image)).detections


def test_model_facts(pose_pipeline: FramePipeline) -> None:
    model = ov.Core().read_model(str(pose_pipeline.runtime.model_path))
    assert model.input().get_partial_shape().to_shape() == [1, 224, 224, 3]
    shapes = {o.get_any_name(): list(o.get_partial_shape().to_shape()) for o in model.outputs}
    assert shapes == {"Identity": [1, 2254, 12], "Identity_1": [1, 2254, 1]}
    assert pose_pipeline.runtime.input_shape == (1, 224, 224, 3)
    adapter = pose_pipeline.adapter
    assert isinstance(adapter, BlazeFaceAdapter) and adapter.family == "blazeface"
    assert (adapter.regressors, adapter.classificators) == ("Identity", "Identity_1")


@pytest.mark.parametrize("name", ["astronaut", "camera"])
def test_finds_the_one_person(pose_pipeline: FramePipeline, name: str) -> None:
    people = detect(pose_pipeline, picture(name))
    assert len(people) == 1
    person = people[0]
    assert person.label == "person" and person.score > 0.5
    assert iou((person.x1, person.y1, person.x2, person.y2), person_normalised(name)) >= 0.5
    # The keypoints are MediaPipe's four, in its order, normalised to the frame.
    assert len(person.keypoints) == 4
    w, h = PICTURE_SIZE
    (_, hip_y), (_, size_y), (sx, sy), _ = person.keypoints
    x1, y1, x2, y2 = MID_SHOULDER[name]
    assert x1 / w <= sx <= x2 / w and y1 / h <= sy <= y2 / h, "mid-shoulder on the shoulders"
    assert size_y < EYES_Y[name] / h, "the size point is above the eyes"
    assert hip_y > sy + 0.2, "the hip well below the shoulders (below the frame for her)"


@pytest.mark.parametrize("name", ["coffee", "rocket", "chelsea", "noise"])
def test_no_person_no_detection(pose_pipeline: FramePipeline, name: str) -> None:
    assert detect(pose_pipeline, picture(name)) == []
