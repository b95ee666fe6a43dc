"""Image classification: top-k of [1,C] scores, softmax, whole-frame boxes; on hand-made scores
and through a generated IR classifier that names a frame's colour."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from evi.errors import ConfigError
from evi.wire import Detection, FrameMeta
from processors.adapters.base import Letterbox
from processors.adapters.classify import ClassifyAdapter
from processors.models import ClassifyConfig
from processors.pipeline import FramePipeline
from tests.fixtures.ov_models import image_model
from tests.processors.conftest import encode

PREP = Letterbox(tensor=(32, 32), resized=(32, 32), pad=(0, 0))
LOGITS = np.array([[1.0, 3.0, 0.5, 2.0]], np.float32)  # softmax: .0854 .6308 .0518 .2321
ANIMALS = ["cat", "dog", "bird", "fox"]


def classify(
    scores: np.ndarray, shape: tuple[int, ...] | None = None, **cfg: object
) -> list[tuple[str, float]]:
    cfg.setdefault("labels", ANIMALS)
    adapter = ClassifyAdapter(ClassifyConfig(name="t", path=Path("m.xml"), **cfg))
    adapter.bind((32, 32), {"prob": shape or scores.shape})
    found = adapter.postprocess({"prob": scores}, PREP)
    assert all((d.x1, d.y1, d.x2, d.y2) == (0.0, 0.0, 1.0, 1.0) for d in found)
    return [(d.label, round(d.score, 4)) for d in found]


def test_top_1_of_probabilities_by_default() -> None:
    probs = np.array([[0.1, 0.6, 0.05, 0.25]], np.float32)
    assert classify(probs) == [("dog", 0.6)]


def test_softmax_and_top_k_best_first() -> None:
    assert classify(LOGITS, softmax=True, top_k=3) == [
        ("dog", 0.6308), ("fox", 0.2321), ("cat", 0.0854),
    ]  # fmt: skip
    assert classify(LOGITS, top_k=2) == [("dog", 3.0), ("fox", 2.0)]  # raw scores kept as given


def test_threshold_and_labels_filter() -> None:
    assert classify(LOGITS, softmax=True, top_k=4, score_threshold=0.2) == [
        ("dog", 0.6308), ("fox", 0.2321),
    ]  # fmt: skip
    assert classify(LOGITS, softmax=True, score_threshold=0.7) == []
    # Only the labelled classes compete (softmax still over all four).
    assert classify(LOGITS, softmax=True, top_k=2, labels={0: "cat", 2: "bird"}) == [
        ("cat", 0.0854), ("bird", 0.0518),
    ]  # fmt: skip
    assert classify(LOGITS, labels={}) == [("1", 3.0)]


def test_omz_shaped_output_and_output_choice() -> None:
    """Many OMZ classifiers answer [1,C,1,1]."""
    probs = np.array([0.1, 0.2, 0.7, 0.0], np.float32).reshape(1, 4, 1, 1)
    assert classify(probs) == [("bird", 0.7)]
    adapter = ClassifyAdapter(ClassifyConfig(name="t", path=Path("m.xml")))
    with pytest.raises(ConfigError, match=r"set `output`"):
        adapter.bind((32, 32), {"a": (1, 10), "b": (1, 5)})
    with pytest.raises(ConfigError, match=r"want one output \[1,C\]"):
        adapter.bind((32, 32), {"boxes": (1, 100, 4)})


COLOURS = ["red", "green", "blue"]


@pytest.fixture(scope="module")
def colour_classifier(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FramePipeline]:
    """Logits = the input's channel means (BGR, as OMZ models take it) routed to the classes
    red, green, blue: a classifier whose right answer we know for any flat frame."""
    d = tmp_path_factory.mktemp("classify")
    w = np.zeros((3, 1, 3), np.float32)
    w[2, 0, 0] = w[1, 0, 1] = w[0, 0, 2] = 1 / 32  # BGR channel 2 (red) → class 0, ...
    path = image_model(d / "colours.xml", {"logits": (np.zeros((1, 3), np.float32), w)},
                       size=(32, 32))  # fmt: skip
    config = ClassifyConfig(name="colours", path=path, labels=COLOURS, softmax=True, top_k=2)
    p = FramePipeline.create("colour", config, d)
    yield p
    p.close()


def detect(p: FramePipeline, image: np.ndarray) -> list[Detection]:
    meta = FrameMeta("cam", 1, 0, image.shape[1], image.shape[0])
    return p.run_sync(meta, encode(image, 95)).detections


@pytest.mark.parametrize(
    ("rgb", "top"), [((255, 0, 0), "red"), ((0, 200, 0), "green"), ((20, 20, 255), "blue")]
)
def test_generated_classifier_names_the_colour(
    colour_classifier: FramePipeline, rgb: tuple[int, int, int], top: str
) -> None:
    found = detect(colour_classifier, np.full((90, 160, 3), rgb, np.uint8))
    assert len(found) == 2  # top_k
    assert found[0].label == top
    assert found[0].score > 0.99 and found[0].score >= found[1].score
    assert [(d.x1, d.y1, d.x2, d.y2) for d in found] == [(0.0, 0.0, 1.0, 1.0)] * 2
    assert colour_classifier.adapter.input_size == (32, 32)
