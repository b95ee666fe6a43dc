"""The anchor-SSD family's pose instance on synthetic tensors: keypoint decode, weighted NMS of
keypoints, and the person box from keypoints as MediaPipe's PoseDetectionToRoi makes it.
No OpenVINO: the adapter is bound with the model's facts (test_pose_model.py checks them live)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from evi.errors import ConfigError
from processors.adapters.anchor_ssd import AlignmentRect, alignment_boxes
from processors.adapters.base import Letterbox, letterbox_geometry
from processors.adapters.blazeface import VARIANTS, BlazeFaceAdapter, blazeface_anchors
from processors.models import BlazeFaceConfig

POSE_OUTPUTS = {"Identity": (1, 2254, 12), "Identity_1": (1, 2254, 1)}
RULE = VARIANTS["pose"].box
SQUARE = Letterbox(tensor=(224, 224), resized=(224, 224), pad=(0, 0))


def pose(**cfg: object) -> BlazeFaceAdapter:
    adapter = BlazeFaceAdapter(BlazeFaceConfig(name="p", variant="pose", **cfg))
    adapter.bind((224, 224), POSE_OUTPUTS)
    return adapter


def test_pose_anchors_are_the_graphs() -> None:
    a = blazeface_anchors("pose")
    # 28x28 (stride 8) and 14x14 (stride 16) grids, then one 7x7 grid for the three stride-32
    # layers; 2 anchors per cell per layer (aspect ratio 1 and the interpolated one).
    assert a.shape == (28 * 28 * 2 + 14 * 14 * 2 + 7 * 7 * 6, 2) == (2254, 2)
    assert a[0].tolist() == a[1].tolist() == pytest.approx([0.5 / 28, 0.5 / 28])
    assert a[1568].tolist() == pytest.approx([0.5 / 14, 0.5 / 14])
    assert np.allclose(a[1960:1966], [0.5 / 7, 0.5 / 7])
    assert a[-1].tolist() == pytest.approx([6.5 / 7, 6.5 / 7])


def test_outputs_by_shape_and_wrong_file_errors() -> None:
    adapter = pose()
    assert (adapter.regressors, adapter.classificators) == ("Identity", "Identity_1")
    with pytest.raises(ConfigError, match=r"'pose' wants a 224x224 input.*128x128"):
        BlazeFaceAdapter(BlazeFaceConfig(name="p", variant="pose")).bind((128, 128), POSE_OUTPUTS)
    face_shapes = {"a": (1, 2254, 16), "b": (1, 2254, 1)}
    with pytest.raises(ConfigError, match=r"want outputs \[1,2254,12\]"):
        BlazeFaceAdapter(BlazeFaceConfig(name="p", variant="pose")).bind((224, 224), face_shapes)


def synthetic(rows: dict[int, tuple[float, list[float]]]) -> dict[str, np.ndarray]:
    regressors = np.zeros((1, 2254, 12), np.float32)
    logits = np.full((1, 2254, 1), -20.0, np.float32)
    for i, (logit, row) in rows.items():
        regressors[0, i] = row
        logits[0, i, 0] = logit
    return {"Identity": regressors, "Identity_1": logits}


def test_keypoints_decode_against_the_anchor() -> None:
    adapter = pose()
    out = synthetic({0: (3.0, [22.4, 0.0, 44.8, 44.8, 0.0, 44.8, 0.0, -44.8, 0.0, 0.0, 11.2, 0.0])})
    found, scores = adapter.decode(out["Identity"][0], out["Identity_1"][0, :, 0])
    ax = 0.5 / 28
    assert found.shape == (1, 12)  # box, then 4 keypoints
    assert found[0, :4].tolist() == pytest.approx([ax, ax - 0.1, ax + 0.2, ax + 0.1])
    assert found[0, 4:].tolist() == pytest.approx(
        [ax, ax + 0.2, ax, ax - 0.2, ax, ax, ax + 0.05, ax]
    )
    assert scores.tolist() == pytest.approx([1 / (1 + math.exp(-3.0))])


def test_the_box_is_mediapipes_roi_and_the_keypoints_are_kept() -> None:
    """Mid-hip at (0.5, 0.6), size point straight above at (0.5, 0.4): the ROI is a square centred
    on the hip with side 2 x 0.2 x 1.25 = 0.5, not the decoded box."""
    adapter = pose()
    a = blazeface_anchors("pose")[1000]
    hip, top = np.array([0.5, 0.6]) - a, np.array([0.5, 0.4]) - a
    row = [0.0, 0.0, 20.0, 20.0, *(hip * 224), *(top * 224), 0.0, 0.0, 0.0, 0.0]
    (person,) = adapter.postprocess(synthetic({1000: (2.0, row)}), SQUARE)
    assert person.label == "person"
    assert (person.x1, person.y1, person.x2, person.y2) == pytest.approx(
        (0.25, 0.35, 0.75, 0.85), abs=1e-5
    )
    assert len(person.keypoints) == 4
    assert person.keypoints[0] == pytest.approx((0.5, 0.6), abs=1e-5)
    assert person.keypoints[1] == pytest.approx((0.5, 0.4), abs=1e-5)
    # Without keypoints in results the box is the same (the keypoints still place it).
    (quiet,) = pose(keypoints=False).postprocess(synthetic({1000: (2.0, row)}), SQUARE)
    assert quiet.keypoints == () and quiet.x1 == person.x1 and quiet.y2 == person.y2


@pytest.mark.parametrize(
    ("end", "factor"),
    [((0.5, 0.4), 1.0), ((0.7, 0.6), 1.0), ((0.5, 0.8), 1.0), ((0.5 + 0.2 / 2**0.5,) * 2, 2**0.5)],
)
def test_rotation_grows_the_axis_aligned_box(end: tuple[float, float], factor: float) -> None:
    """Upright, lying or upside down the rotated square's bounds are the square; at 45° they grow
    by √2 (MediaPipe crops the rotated square; a box on the wire cannot rotate)."""
    points = np.array([[[0.5, 0.6], list(end), [0, 0], [0, 0]]], np.float32)
    if end[0] == end[1]:  # the 45° case: hip to size point along the diagonal
        points[0, 0] = [0.5, 0.5]
    box = alignment_boxes(points, SQUARE, RULE)[0]  # type: ignore[arg-type]
    half = 0.25 * factor
    cx, cy = points[0, 0]
    assert box.tolist() == pytest.approx(
        [max(0, cx - half), max(0, cy - half), min(1, cx + half), min(1, cy + half)], abs=1e-5
    )


def test_distances_are_in_frame_pixels_on_a_wide_frame() -> None:
    """On a 640x480 frame a vertical hip-to-point distance of 0.2 of the height is 96 px: the
    square is 240 px a side, 0.375 of the width and 0.5 of the height."""
    lb = letterbox_geometry((640, 480), (224, 224))
    assert (lb.resized, lb.frame) == ((224, 168), (640, 480))
    points = np.array([[[0.5, 0.6], [0.5, 0.4], [0, 0], [0, 0]]], np.float32)
    box = alignment_boxes(points, lb, AlignmentRect(0, 1, 90.0, 1.25))[0]
    assert box.tolist() == pytest.approx([0.5 - 0.1875, 0.35, 0.5 + 0.1875, 0.85], abs=1e-6)
    # 700x500 letterboxes to 224x160 (aspect 1.4 both): the frame's size is used either way.
    odd = letterbox_geometry((700, 500), (224, 224))
    assert odd.frame == (700, 500)
    box = alignment_boxes(points, odd, AlignmentRect(0, 1, 90.0, 1.25))[0]
    half_w = 0.5 * 500 / 700 / 2  # the square is 0.5 of the height = 250 px a side
    assert box.tolist() == pytest.approx([0.5 - half_w, 0.35, 0.5 + half_w, 0.85], abs=1e-6)


def test_weighted_nms_averages_keypoints_too() -> None:
    adapter = pose()
    a = blazeface_anchors("pose")
    rows = {}
    for i, (logit, dy) in {1000: (2.0, 0.0), 1001: (1.0, 4.48)}.items():  # same cell, 2 anchors
        hip, top = np.array([0.5, 0.6]) - a[i], np.array([0.5, 0.4]) - a[i]
        rows[i] = (logit, [0.0, 0.0, 20.0, 20.0, hip[0] * 224, hip[1] * 224 + dy,
                           *(top * 224), 0.0, 0.0, 0.0, 0.0])  # fmt: skip
    (person,) = adapter.postprocess(synthetic(rows), SQUARE)
    w1, w2 = 1 / (1 + math.exp(-2.0)), 1 / (1 + math.exp(-1.0))
    assert person.score == pytest.approx(w1)
    assert person.keypoints[0][1] == pytest.approx(0.6 + 0.02 * w2 / (w1 + w2), abs=1e-5)


def test_face_results_carry_keypoints_only_when_asked() -> None:
    outputs = {
        "regressors": np.zeros((1, 896, 16), np.float32),
        "classificators": np.full((1, 896, 1), -20.0, np.float32),
    }
    outputs["regressors"][0, 141, :6] = [0.0, 0.0, 20.0, 20.0, 3.0, -3.0]
    outputs["classificators"][0, 141, 0] = 2.5
    prep = Letterbox(tensor=(128, 128), resized=(128, 128), pad=(0, 0))
    plain = BlazeFaceAdapter(BlazeFaceConfig(name="f"))
    plain.bind((128, 128), {"regressors": (1, 896, 16), "classificators": (1, 896, 1)})
    (face,) = plain.postprocess(outputs, prep)
    assert face.keypoints == ()
    eyes = BlazeFaceAdapter(BlazeFaceConfig(name="f", keypoints=True))
    eyes.bind((128, 128), {"regressors": (1, 896, 16), "classificators": (1, 896, 1)})
    (with_points,) = eyes.postprocess(outputs, prep)
    assert (with_points.x1, with_points.y1, with_points.x2, with_points.y2) == (
        face.x1, face.y1, face.x2, face.y2,
    )  # fmt: skip
    x, y = blazeface_anchors("short")[141]
    assert len(with_points.keypoints) == 6
    assert with_points.keypoints[0] == pytest.approx((x + 3 / 128, y - 3 / 128), abs=1e-6)
    assert with_points.keypoints[1] == pytest.approx((x, y), abs=1e-6)
