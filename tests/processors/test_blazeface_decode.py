"""BlazeFace maths on synthetic and recorded tensors: anchors, box decode, NMS, letterbox.
No OpenVINO: the adapter is bound with the model's recorded facts."""

from __future__ import annotations

import numpy as np
import pytest

from evi.errors import ConfigError
from processors.adapters.base import (
    Letterbox,
    letterbox,
    letterbox_geometry,
    nms,
    sigmoid,
    ssd_anchors,
)
from processors.adapters.blazeface import BlazeFaceAdapter, blazeface_anchors
from processors.models import BlazeFaceConfig
from tests.fixtures.blazeface_astronaut import (
    BACKGROUND_LOGIT,
    SHORT_RANGE_ABOVE_HALF,
    SHORT_RANGE_ROWS,
)
from tests.fixtures.faces import astronaut_face_normalised
from tests.processors.conftest import iou

# What OpenVINO reports for the two TFLite files (see test_blazeface_model.py).
SHORT_OUTPUTS = {"regressors": (1, 896, 16), "classificators": (1, 896, 1)}
FULL_OUTPUTS = {
    "reshaped_regressor_face_4": (1, 2304, 16),
    "reshaped_classifier_face_4": (1, 2304, 1),
}


def bound(variant: str = "short", **cfg: object) -> BlazeFaceAdapter:
    adapter = BlazeFaceAdapter(BlazeFaceConfig(name="t", variant=variant, **cfg))
    if variant == "short":
        adapter.bind((128, 128), SHORT_OUTPUTS)
    else:
        adapter.bind((192, 192), FULL_OUTPUTS)
    return adapter


def square_prep(size: int) -> Letterbox:
    return Letterbox(tensor=(size, size), resized=(size, size), pad=(0, 0))


def test_anchor_counts_and_known_values() -> None:
    short, full = blazeface_anchors("short"), blazeface_anchors("full")
    assert short.shape == (896, 2)
    assert full.shape == (2304, 2)
    # Short: 16x16 grid (stride 8), 2 anchors per cell, then 8x8 grid (three stride-16 layers),
    # 6 anchors per cell. Centres are (cell + 0.5) / grid.
    assert short[0].tolist() == short[1].tolist() == [0.03125, 0.03125]
    assert short[2].tolist() == [0.09375, 0.03125]  # next cell along x
    assert short[32].tolist() == [0.03125, 0.09375]  # next row
    assert short[511].tolist() == [0.96875, 0.96875]
    assert np.all(short[512:518] == [0.0625, 0.0625])
    assert short[518].tolist() == [0.1875, 0.0625]
    assert short[-1].tolist() == [0.9375, 0.9375]
    # Full: one 48x48 grid (stride 4), 1 anchor per cell.
    assert full[0].tolist() == pytest.approx([1 / 96, 1 / 96])
    assert full[1].tolist() == pytest.approx([3 / 96, 1 / 96])
    assert full[48].tolist() == pytest.approx([1 / 96, 3 / 96])
    assert full[-1].tolist() == pytest.approx([95 / 96, 95 / 96])


def test_generic_anchor_options() -> None:
    # Two aspect ratios and no interpolated anchor: 2 per cell per layer.
    a = ssd_anchors((8, 4), [4, 4], aspect_ratios=2, interpolated_scale_aspect_ratio=0.0)
    assert a.shape == (2 * 1 * 2 * 2, 2)
    assert a[:4].tolist() == [[0.25, 0.5]] * 4
    assert a[4].tolist() == [0.75, 0.5]


def test_decode_of_one_synthetic_anchor() -> None:
    adapter = bound()
    regressors = np.zeros((896, 16), np.float32)
    logits = np.full(896, -50.0, np.float32)
    # Anchor 0 sits at (0.03125, 0.03125); offsets are input pixels (128).
    regressors[0, :4] = [12.8, 6.4, 25.6, 38.4]
    logits[0] = 2.0
    boxes, scores = adapter.decode(regressors, logits)
    assert boxes.shape == (1, 4)
    cx, cy, w, h = 0.03125 + 0.1, 0.03125 + 0.05, 0.2, 0.3
    assert boxes[0].tolist() == pytest.approx([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
    assert scores.tolist() == pytest.approx([1 / (1 + np.exp(-2.0))])


def test_decode_drops_low_scores_and_empty_boxes() -> None:
    adapter = bound(score_threshold=0.6)
    regressors = np.zeros((896, 16), np.float32)
    regressors[:, 2:4] = 10.0
    logits = np.full(896, -1000.0, np.float32)  # clipped to -100 before the sigmoid: no overflow
    logits[10] = 0.0  # score 0.5 < 0.6
    logits[20] = 1000.0  # clipped to 100: score 1.0
    logits[30] = 1.0
    regressors[30, 2] = -3.0  # negative width: not a box
    boxes, scores = adapter.decode(regressors, logits)
    assert scores.tolist() == [1.0]
    x, y = blazeface_anchors("short")[20]
    assert boxes[0].tolist() == pytest.approx([x - 5 / 128, y - 5 / 128, x + 5 / 128, y + 5 / 128])


def test_sigmoid_is_stable() -> None:
    x = np.array([-100.0, -10.0, 0.0, 10.0, 100.0], np.float32)
    assert sigmoid(x).tolist() == pytest.approx([0.0, 4.5398e-5, 0.5, 0.9999546, 1.0], abs=1e-6)


def test_weighted_and_hard_nms() -> None:
    boxes = np.array(
        [[0.10, 0.10, 0.30, 0.30], [0.12, 0.12, 0.32, 0.32], [0.60, 0.60, 0.80, 0.80]], np.float32
    )
    scores = np.array([0.9, 0.6, 0.7], np.float32)
    hard_boxes, hard_scores = nms(boxes, scores, 0.3, 10)
    assert hard_scores.tolist() == pytest.approx([0.9, 0.7])
    np.testing.assert_allclose(hard_boxes, boxes[[0, 2]])
    w_boxes, w_scores = nms(boxes, scores, 0.3, 10, weighted=True)
    assert w_scores.tolist() == pytest.approx([0.9, 0.7])  # the group keeps its top score
    mean = (boxes[0] * 0.9 + boxes[1] * 0.6) / 1.5  # ...and the score-weighted mean box
    np.testing.assert_allclose(w_boxes, np.stack([mean, boxes[2]]), rtol=1e-6)
    one_box, _ = nms(boxes, scores, 0.3, 1)
    assert len(one_box) == 1
    empty_boxes, empty_scores = nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), 0.3, 5)
    assert empty_boxes.shape == (0, 4) and empty_scores.shape == (0,)


def test_letterbox_geometry_and_mapping_back() -> None:
    lb = letterbox_geometry((640, 480), (128, 128))
    assert (lb.resized, lb.pad) == ((128, 96), (0, 16))
    portrait = letterbox_geometry((480, 640), (192, 192))
    assert (portrait.resized, portrait.pad) == ((144, 192), (24, 0))
    # A box on the picture's corners in tensor space maps to the frame's corners.
    corners = np.array([[0.0, 16 / 128, 1.0, 112 / 128]], np.float32)
    np.testing.assert_allclose(lb.to_frame(corners), [[0.0, 0.0, 1.0, 1.0]], atol=1e-6)
    # Padding area clips to the frame edge.
    outside = np.array([[0.5, 0.0, 0.6, 0.05]], np.float32)
    assert lb.to_frame(outside)[0, 1] == 0.0 and lb.to_frame(outside)[0, 3] == 0.0


def test_letterbox_pixels() -> None:
    image = np.full((480, 640, 3), 200, np.uint8)
    batch, lb = letterbox(image, (128, 128))
    assert batch.shape == (1, 128, 128, 3) and batch.dtype == np.uint8
    assert lb.pad == (0, 16)
    assert np.all(batch[0, :16] == 0) and np.all(batch[0, 112:] == 0)  # black borders
    assert np.all(batch[0, 16:112] == 200)


def test_recorded_astronaut_tensors_decode_to_the_face() -> None:
    adapter = bound()
    regressors = np.zeros((1, 896, 16), np.float32)
    logits = np.full((1, 896, 1), BACKGROUND_LOGIT, np.float32)
    for index, (logit, row) in SHORT_RANGE_ROWS.items():
        regressors[0, index] = row
        logits[0, index, 0] = logit
    boxes, _ = adapter.decode(regressors[0], logits[0, :, 0])
    assert len(boxes) == len(SHORT_RANGE_ABOVE_HALF)  # the two sub-threshold rows are gone
    outputs = {"regressors": regressors, "classificators": logits}
    detections = adapter.postprocess(outputs, square_prep(128))
    assert len(detections) == 1
    face = detections[0]
    assert face.label == "face"
    assert face.score == pytest.approx(1 / (1 + np.exp(-2.478)), abs=1e-4)  # best anchor, 141
    assert iou((face.x1, face.y1, face.x2, face.y2), astronaut_face_normalised()) >= 0.7
    # Hard NMS keeps the best anchor's own box instead of the weighted mean.
    hard = bound(nms="hard").postprocess(outputs, square_prep(128))
    x, y = blazeface_anchors("short")[141]
    r = SHORT_RANGE_ROWS[141][1]
    cx, cy, w, h = x + r[0] / 128, y + r[1] / 128, r[2] / 128, r[3] / 128
    assert [hard[0].x1, hard[0].y1, hard[0].x2, hard[0].y2] == pytest.approx(
        [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], abs=1e-6
    )


def test_outputs_are_found_by_shape_not_order() -> None:
    adapter = BlazeFaceAdapter(BlazeFaceConfig(name="t", variant="full"))
    adapter.bind((192, 192), dict(reversed(list(FULL_OUTPUTS.items()))))
    assert adapter.regressors == "reshaped_regressor_face_4"
    assert adapter.classificators == "reshaped_classifier_face_4"


def test_wrong_variant_for_the_file_is_a_config_error() -> None:
    adapter = BlazeFaceAdapter(BlazeFaceConfig(name="t", variant="short"))
    with pytest.raises(ConfigError, match=r"'short' wants a 128x128 input.*192x192"):
        adapter.bind((192, 192), FULL_OUTPUTS)
    wrong_shapes = {"a": (1, 896, 4), "b": (1, 896, 1)}
    with pytest.raises(ConfigError, match=r"want outputs \[1,896,16\]"):
        adapter.bind((128, 128), wrong_shapes)
    with pytest.raises(RuntimeError, match="not bound"):
        _ = BlazeFaceAdapter(BlazeFaceConfig(name="t")).input_size
