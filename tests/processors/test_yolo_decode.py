"""YOLO heads on hand-made tensors: v5 and v8 layouts, thresholds, class-wise NMS, letterbox.
No OpenVINO: the adapter is bound with the facts `configure` would read from a model."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from evi.errors import ConfigError
from processors.adapters.base import Letterbox, letterbox_geometry, nms_groups
from processors.adapters.yolo import YoloAdapter
from processors.models import YoloConfig
from tests.fixtures.ov_models import yolo_v5_head, yolo_v8_head

SIZE = (64, 64)
SQUARE = Letterbox(tensor=SIZE, resized=SIZE, pad=(0, 0))
LABELS = ["person", "car", "dog"]

# (cx, cy, w, h) in input pixels, class id, class score; objectness 1 unless said.
CANDIDATES = [
    (16, 16, 16, 16, 0, 0.9),  # person A
    (18, 16, 16, 16, 0, 0.8),  # person, IoU 0.78 with A: suppressed
    (17, 17, 16, 16, 1, 0.7),  # car on top of A: another class, kept
    (48, 48, 8, 8, 2, 0.6),  # dog alone
    (48, 16, 8, 8, 2, 0.2),  # dog below the threshold
]


def v5(cands: Sequence[tuple[float, ...]] = CANDIDATES, obj: float = 1.0) -> np.ndarray:
    return yolo_v5_head([(*c[:4], obj, *c[4:]) for c in cands], classes=3)


def v8(cands: Sequence[tuple[float, ...]] = CANDIDATES) -> np.ndarray:
    return yolo_v8_head(cands, classes=3)


def bound(head: np.ndarray, **cfg: object) -> YoloAdapter:
    cfg.setdefault("labels", LABELS)
    adapter = YoloAdapter(YoloConfig(name="t", path=Path("m.onnx"), **cfg))
    adapter.bind(SIZE, {"output0": head.shape})
    return adapter


def decoded(head: np.ndarray, prep: Letterbox = SQUARE, **cfg: object) -> list[tuple[Any, ...]]:
    adapter = bound(head, **cfg)
    out = adapter.postprocess({"output0": head}, prep)
    return [(d.label, round(d.score, 4), *(round(v, 4) for v in (d.x1, d.y1, d.x2, d.y2)))
            for d in out]  # fmt: skip


EXPECTED = [
    ("person", 0.9, 0.125, 0.125, 0.375, 0.375),
    ("car", 0.7, 0.1406, 0.1406, 0.3906, 0.3906),
    ("dog", 0.6, 0.6875, 0.6875, 0.8125, 0.8125),
]


def test_version_is_told_by_the_output_shape() -> None:
    assert bound(v5()).version == "v5" and bound(v5()).classes == 3  # [1,64,8]
    assert bound(v8()).version == "v8" and bound(v8()).classes == 3  # [1,7,64]
    # Real heads: YOLOv5s 640 [1,25200,85], YOLOv8n 640 [1,84,8400].
    big5 = YoloAdapter(YoloConfig(name="t", path="m.xml"))
    big5.bind((640, 640), {"output0": (1, 25200, 85)})
    big8 = YoloAdapter(YoloConfig(name="t", path="m.xml"))
    big8.bind((640, 640), {"output0": (1, 84, 8400)})
    assert (big5.version, big5.classes, big8.version, big8.classes) == ("v5", 80, "v8", 80)


def test_v5_and_v8_heads_give_the_same_detections() -> None:
    assert decoded(v5()) == EXPECTED
    assert decoded(v8()) == EXPECTED


def test_v5_score_is_objectness_times_class_score() -> None:
    got = decoded(v5(obj=0.8))  # 0.9*0.8, 0.7*0.8 pass 0.25; the dog's 0.48 does too
    assert [(d[0], d[1]) for d in got] == [("person", 0.72), ("car", 0.56), ("dog", 0.48)]
    got = decoded(v5(obj=0.8), score_threshold=0.5)
    assert [(d[0], d[1]) for d in got] == [("person", 0.72), ("car", 0.56)]


def test_nms_is_per_class_unless_agnostic() -> None:
    agnostic = decoded(v8(), agnostic_nms=True)
    assert [d[0] for d in agnostic] == ["person", "dog"]  # the car under the person is gone
    loose = decoded(v8(), iou_threshold=0.9)  # the two persons overlap by 0.78 < 0.9
    assert [(d[0], d[1]) for d in loose] == [("person", 0.9), ("person", 0.8), ("car", 0.7),
                                             ("dog", 0.6)]  # fmt: skip
    assert [d[0] for d in decoded(v8(), max_detections=2)] == ["person", "car"]


def test_labels_name_and_filter_classes() -> None:
    assert [d[0] for d in decoded(v8(), labels={2: "dog"})] == ["dog"]
    # Unlabelled classes are dropped before NMS: the car is not suppressed by the absent person.
    assert [d[0] for d in decoded(v8(), labels={1: "car"}, agnostic_nms=True)] == ["car"]
    assert [d[0] for d in decoded(v8(), labels={})] == ["0", "1", "2"]


def test_letterbox_maps_back_to_the_frame() -> None:
    """A 128x64 frame letterboxed into 64x64 is 64x32 with 16 rows of padding on top."""
    lb = letterbox_geometry((128, 64), SIZE)
    assert lb == Letterbox(tensor=SIZE, resized=(64, 32), pad=(0, 16))
    head = v8([(32, 32, 32, 32, 1, 0.9), (8, 20, 8, 8, 0, 0.8)])
    assert decoded(head, lb) == [
        ("car", 0.9, 0.25, 0.0, 0.75, 1.0),  # tensor rows 16..48: the frame's whole height
        ("person", 0.8, 0.0625, 0.0, 0.1875, 0.25),  # rows 16..24, clipped at the top
    ]


def test_normalized_boxes() -> None:
    head = v8([(0.5, 0.5, 0.5, 0.25, 1, 0.9)])
    assert decoded(head, normalized_boxes=True) == [("car", 0.9, 0.25, 0.375, 0.75, 0.625)]


def test_nothing_above_the_threshold_is_no_detection() -> None:
    assert decoded(v8([(16, 16, 8, 8, 0, 0.1)])) == []
    assert decoded(v5([(16, 16, 8, 8, 0, 0.9)], obj=0.1)) == []


def test_bind_errors_name_the_problem() -> None:
    with pytest.raises(ConfigError, match=r"want one output \[1,N,5\+C\] or \[1,4\+C,N\]"):
        YoloAdapter(YoloConfig(name="t", path="m")).bind(SIZE, {"x": (1, 1000)})
    with pytest.raises(ConfigError, match=r"dynamic dimension: set `version`"):
        YoloAdapter(YoloConfig(name="t", path="m")).bind(SIZE, {"x": (1, 84, -1)})
    explicit = YoloAdapter(YoloConfig(name="t", path="m", version="v8"))
    explicit.bind(SIZE, {"x": (1, 84, -1)})
    assert explicit.classes == 80
    with pytest.raises(ConfigError, match=r"no class scores"):
        YoloAdapter(YoloConfig(name="t", path="m", version="v5")).bind(SIZE, {"x": (1, 9, 5)})


def test_preprocess_letterboxes_by_default() -> None:
    frame = np.full((64, 128, 3), 255, np.uint8)
    tensor, prep = bound(v8()).preprocess(frame)
    assert prep == Letterbox(tensor=SIZE, resized=(64, 32), pad=(0, 16))
    assert tensor.shape == (1, 64, 64, 3)
    assert tensor[0, :16].max() == 0 and tensor[0, 16:48].min() == 255 and tensor[0, 48:].max() == 0


def test_opencv_nms_keeps_what_the_numpy_reference_keeps() -> None:
    """`suppress` uses OpenCV's NMS; on 300 random boxes of 3 classes it keeps exactly what the
    shared greedy `nms_groups` keeps with classes shifted apart, in the same order."""
    rng = np.random.default_rng(11)
    xy = rng.random((300, 2), dtype=np.float32)
    boxes = np.concatenate([xy, xy + rng.random((300, 2), dtype=np.float32) * 0.3], axis=1)
    scores = rng.random(300, dtype=np.float32)
    ids = rng.integers(0, 3, 300).astype(np.int64)
    adapter = bound(v8(), max_detections=1000)
    shifted = boxes + (ids * 3.0)[:, None].astype(np.float32)
    reference = [int(g[0]) for g in nms_groups(shifted, scores, 0.45, 1000)]
    assert adapter.suppress(boxes, scores, ids).tolist() == reference
    assert 50 < len(reference) < 300
    agnostic = bound(v8(), max_detections=1000, agnostic_nms=True)
    reference = [int(g[0]) for g in nms_groups(boxes, scores, 0.45, 1000)]
    assert agnostic.suppress(boxes, scores, ids).tolist() == reference
