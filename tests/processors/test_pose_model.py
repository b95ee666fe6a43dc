"""MediaPipe's pose detector through real OpenVINO and the real pipeline (JPEG in, detections
out) on pictures with one person each: the person, its box and keypoints are where we measured."""

from __future__ import annotations

import cv2
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


@pytest.mark.parametrize(
    ("canvas", "size", "at", "inside"),
    [
        ((1024, 512), 512, (0, 0), False),  # left half of a wide frame
        ((1024, 512), 512, (512, 0), False),  # right half
        ((512, 768), 512, (0, 256), False),  # bottom of a tall frame
        ((768, 512), 320, (224, 96), True),  # smaller: the ROI's sides fit in the frame
        ((640, 480), 300, (170, 90), True),
    ],
)
def test_keypoints_and_box_map_back_through_the_letterbox(
    pose_pipeline: FramePipeline, canvas: tuple[int, int], size: int, at: tuple[int, int],
    inside: bool,
) -> None:  # fmt: skip
    """The astronaut scaled to `size` and pasted into another frame: her mid-shoulder keypoint
    lands on her shoulders wherever she is, and the box is centred on her mid-hip, MediaPipe's
    ROI centre, whenever clipping leaves it so."""
    image = np.full((canvas[1], canvas[0], 3), (40, 60, 90), np.uint8)
    x, y = at
    image[y : y + size, x : x + size] = cv2.resize(
        rgb_sample("astronaut"), (size, size), interpolation=cv2.INTER_AREA
    )
    (person,) = detect(pose_pipeline, image)
    (hx, hy), _, (sx, sy), _ = person.keypoints
    k = size / PICTURE_SIZE[0]
    x1, y1, x2, y2 = MID_SHOULDER["astronaut"]
    cw, ch = canvas
    assert (x + x1 * k) / cw <= sx <= (x + x2 * k) / cw, person.keypoints
    assert (y + y1 * k) / ch <= sy <= (y + y2 * k) / ch, person.keypoints
    assert (person.x1 > 0 and person.x2 < 1) == inside, person
    if inside:
        assert (person.x1 + person.x2) / 2 == pytest.approx(hx, abs=1e-4)
        assert person.y1 == pytest.approx(hy - (hx - person.x1) * cw / ch, abs=1e-4)  # a square
