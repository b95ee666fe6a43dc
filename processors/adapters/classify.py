"""Whole-image classifiers: one output of C class scores ([1,C], or [1,C,1,1] as many Open Model
Zoo models have it), probabilities or logits (`softmax: true` turns logits into probabilities).

Each of the top-k classes scoring at least `score_threshold` becomes a Detection whose box is the
whole frame (0, 0, 1, 1), best first: a result keeps one shape for every family, and consumers
that draw boxes draw a frame-sized one with the class name.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from evi.wire import Detection
from processors.adapters.base import (
    F32,
    Adapter,
    InputSpec,
    Letterbox,
    Shape,
    Size,
    image_spec,
    label_names,
    pick_output,
    wanted_classes,
)
from processors.models import ClassifyConfig


def _fits(shape: Shape) -> bool:
    """Batch 1 and one axis of classes: [1,C], [1,C,1,1]."""
    return len(shape) >= 2 and shape[0] in (1, -1) and sum(d != 1 for d in shape[1:]) == 1


def softmax(x: F32) -> F32:
    e = np.exp(x - x.max())
    out: F32 = (e / e.sum()).astype(np.float32)
    return out


class ClassifyAdapter(Adapter[ClassifyConfig]):
    family = "classify"
    input_spec = InputSpec(layout=None, color="BGR", resize="stretch")

    def __init__(self, config: ClassifyConfig) -> None:
        super().__init__(config)
        self.spec = image_spec(config)
        self.output = ""

    def bind(self, input_size: Size, outputs: Mapping[str, Shape]) -> None:
        cfg = self.config
        self.output = pick_output(cfg, cfg.output, outputs, _fits, "[1,C] of class scores")
        super().bind(input_size, outputs)

    def top(self, scores: F32) -> list[tuple[int, float]]:
        """Class scores [C] → (class id, score) of the top k, best first. Pure numpy."""
        cfg = self.config
        if cfg.softmax:
            scores = softmax(scores)
        ids = np.arange(scores.size, dtype=np.int64)
        idx = np.flatnonzero((scores >= cfg.score_threshold) & wanted_classes(cfg.labels, ids))
        idx = idx[np.argsort(-scores[idx], kind="stable")[: cfg.top_k]]
        return list(zip(idx.tolist(), scores[idx].tolist(), strict=True))

    def postprocess(self, outputs: Mapping[str, F32], prep: Letterbox) -> list[Detection]:
        top = self.top(outputs[self.output].reshape(-1).astype(np.float32))
        names = label_names(self.config.labels, np.array([i for i, _ in top], dtype=np.int64))
        return [Detection(n, s, 0.0, 0.0, 1.0, 1.0) for n, (_, s) in zip(names, top, strict=True)]
