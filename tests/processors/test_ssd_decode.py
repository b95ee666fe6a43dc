"""SSD DetectionOutput decoding on hand-made tensors. No OpenVINO: the adapter is bound with the
facts `configure` would read from a model."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from evi.errors import ConfigError
from processors.adapters.base import Letterbox, letterbox_geometry
from processors.adapters.ssd import SsdAdapter
from processors.models import SsdConfig
from tests.fixtures.ov_models import ssd_rows

SIZE = (64, 48)  # (w, h) of the input
OUTPUTS = {"detection_out": (1, 1, 16, 7)}
STRETCH = Letterbox(tensor=SIZE, resized=SIZE, pad=(0, 0))


def bound(outputs: Mapping[str, tuple[int, ...]] = OUTPUTS, **cfg: object) -> SsdAdapter:
    adapter = SsdAdapter(SsdConfig(name="t", path=Path("m.xml"), **cfg))
    adapter.bind(SIZE, outputs)
    return adapter


def decoded(
    adapter: SsdAdapter, rows: np.ndarray, prep: Letterbox = STRETCH
) -> list[tuple[Any, ...]]:
    out = adapter.postprocess({adapter.output: rows}, prep)
    return [(d.label, round(d.score, 4), *(round(v, 4) for v in (d.x1, d.y1, d.x2, d.y2)))
            for d in out]  # fmt: skip


def test_rows_become_detections_best_first() -> None:
    rows = ssd_rows(
        (0, 1, 0.6, 0.1, 0.2, 0.3, 0.4),
        (0, 2, 0.9, 0.5, 0.5, 0.9, 0.8),
        (0, 1, 0.75, 0.0, 0.0, 0.25, 0.5),
    )
    adapter = bound(labels=["background", "person", "car"])
    assert decoded(adapter, rows) == [
        ("car", 0.9, 0.5, 0.5, 0.9, 0.8),
        ("person", 0.75, 0.0, 0.0, 0.25, 0.5),
        ("person", 0.6, 0.1, 0.2, 0.3, 0.4),
    ]


def test_image_id_minus_one_ends_the_detections() -> None:
    rows = ssd_rows((0, 1, 0.9, 0.1, 0.1, 0.2, 0.2))
    rows[0, 0, 2] = (0, 1, 0.99, 0.5, 0.5, 0.6, 0.6)  # after the terminator at row 1: ignored
    assert [d[1] for d in decoded(bound(), rows)] == [0.9]
    # Without a terminator every row counts (a full DetectionOutput of N rows).
    full = np.tile(np.array([0, 1, 0.7, 0.1, 0.1, 0.2, 0.2], np.float32), (1, 1, 16, 1))
    assert len(decoded(bound(), full)) == 16


def test_threshold_is_inclusive_and_max_detections_caps() -> None:
    rows = ssd_rows(*[(0, 1, s, 0.1, 0.1, 0.2, 0.2) for s in (0.3, 0.5, 0.49, 0.8, 0.5)])
    assert [d[1] for d in decoded(bound(score_threshold=0.5), rows)] == [0.8, 0.5, 0.5]
    assert [d[1] for d in decoded(bound(score_threshold=0.3, max_detections=2), rows)] == [
        0.8,
        0.5,
    ]


def test_labels_name_and_filter_classes() -> None:
    """OMZ pedestrian-and-vehicle-detector-adas-0001: 1 vehicle, 2 pedestrian. A mapping that
    names only some classes keeps only those; no labels at all keeps every class by number."""
    rows = ssd_rows((0, 1, 0.9, 0.1, 0.1, 0.2, 0.2), (0, 2, 0.8, 0.3, 0.3, 0.4, 0.4))
    both = bound(labels={1: "vehicle", 2: "pedestrian"})
    assert [d[0] for d in decoded(both, rows)] == ["vehicle", "pedestrian"]
    assert [d[0] for d in decoded(bound(labels={2: "pedestrian"}), rows)] == ["pedestrian"]
    assert [d[0] for d in decoded(bound(), rows)] == ["1", "2"]


def test_boxes_are_clipped_and_empty_ones_dropped() -> None:
    rows = ssd_rows(
        (0, 1, 0.9, -0.1, 0.5, 0.5, 1.2),  # sticks out of the image
        (0, 1, 0.8, 1.1, 0.2, 1.3, 0.4),  # wholly outside: empty once clipped
    )
    assert decoded(bound(), rows) == [("1", 0.9, 0.0, 0.5, 0.5, 1.0)]


def test_letterboxed_input_maps_back_to_the_frame() -> None:
    """A 128x48 frame letterboxed into 64x48: scaled to 64x24, padded 12 rows top and bottom."""
    lb = letterbox_geometry((128, 48), SIZE)
    assert lb == Letterbox(tensor=SIZE, resized=(64, 24), pad=(0, 12))
    rows = ssd_rows((0, 1, 0.9, 0.25, 0.25, 0.75, 0.75))  # tensor rows 12..36: the whole frame
    assert decoded(bound(resize="letterbox"), rows, lb) == [("1", 0.9, 0.25, 0.0, 0.75, 1.0)]


def test_preprocess_stretches_by_default_and_letterboxes_on_request() -> None:
    frame = np.zeros((60, 160, 3), np.uint8)
    frame[:, :80] = 200  # left half bright
    tensor, prep = bound().preprocess(frame)
    assert tensor.shape == (1, 48, 64, 3) and tensor.dtype == np.uint8
    assert prep == STRETCH
    assert tensor[0, :, :31].min() == 200 and tensor[0, :, 33:].max() == 0  # stretched, not padded
    tensor, prep = bound(resize="letterbox").preprocess(frame)
    assert prep == Letterbox(tensor=SIZE, resized=(64, 24), pad=(0, 12))
    assert tensor[0, :12].max() == 0 and tensor[0, 12:36, :31].min() == 200


def test_bind_finds_the_detection_output_by_shape() -> None:
    outputs = {"scores": (1, 100), "detection_out": (1, 1, -1, 7), "other": (1, 1, 200, 5)}
    assert bound(outputs).output == "detection_out"
    assert bound(outputs, output="detection_out").output == "detection_out"
    with pytest.raises(ConfigError, match=r"want one output \[1,1,N,7\].*'scores'"):
        bound({"scores": (1, 100)})
    with pytest.raises(ConfigError, match=r"set `output`"):
        bound({"a": (1, 1, 100, 7), "b": (1, 1, 200, 7)})
    with pytest.raises(ConfigError, match=r"want output 'other'"):
        bound(outputs, output="other")
