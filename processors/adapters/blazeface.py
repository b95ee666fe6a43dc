"""MediaPipe BlazeFace, short range (128x128, 896 anchors) and full range (192x192, 2304 anchors).

Mirrors MediaPipe's face_detection_{short,full}_range graphs: ImageToTensor letterboxes the frame
into the input and maps pixels to [-1, 1]; SsdAnchors makes fixed-size anchors; TensorsToDetections
decodes x/y/w/h offsets (in input pixels) against the anchors and clips logits to ±100 before the
sigmoid; NonMaxSuppression is WEIGHTED at IoU 0.3. Keypoints (6 per face) are decoded by the model
but not carried: `Detection` has no field for them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from evi.errors import ConfigError
from evi.wire import Detection
from processors.adapters.base import (
    F32,
    Adapter,
    InputSpec,
    Letterbox,
    Size,
    nms,
    sigmoid,
    ssd_anchors,
    to_detections,
)
from processors.models import BlazeFaceConfig

SCORE_CLIP = 100.0  # score_clipping_thresh in MediaPipe's graphs
NUM_COORDS = 16  # box (4) + 6 keypoints x (x, y)


@dataclass(frozen=True, slots=True)
class _Variant:
    input_size: Size
    strides: list[int]
    interpolated_scale_aspect_ratio: float


# SsdAnchorsCalculator options of face_detection_{short,full}_range_common.pbtxt.
VARIANTS = {
    "short": _Variant((128, 128), [8, 16, 16, 16], 1.0),
    "full": _Variant((192, 192), [4], 0.0),
}


def blazeface_anchors(variant: str) -> F32:
    v = VARIANTS[variant]
    return ssd_anchors(
        v.input_size, v.strides, interpolated_scale_aspect_ratio=v.interpolated_scale_aspect_ratio
    )


class BlazeFaceAdapter(Adapter[BlazeFaceConfig]):
    family = "blazeface"
    input_spec = InputSpec(layout="NHWC", color="RGB", mean=127.5, scale=127.5)  # → [-1, 1]

    def __init__(self, config: BlazeFaceConfig) -> None:
        super().__init__(config)
        self.anchors = blazeface_anchors(config.variant)
        self.regressors = ""
        self.classificators = ""
        self.label = config.labels[0]
        self._size = np.array(VARIANTS[config.variant].input_size, np.float32)  # (w, h)
        self._twice_size = self._size * 2  # x / (2w) == x / w / 2 exactly: one call, not two
        t = config.score_threshold
        self._min_logit = -np.inf if t <= 0 else np.inf if t >= 1 else float(np.log(t / (1 - t)))

    def bind(self, input_size: Size, outputs: Mapping[str, tuple[int, ...]]) -> None:
        """Find the outputs by shape ([1,N,16] boxes, [1,N,1] logits), not by name or order."""
        cfg = self.config
        want = VARIANTS[cfg.variant].input_size
        if input_size != want:
            raise ConfigError(
                f"model {cfg.name}: BlazeFace {cfg.variant!r} wants a {want[0]}x{want[1]} input, "
                f"the model has {input_size[0]}x{input_size[1]} (wrong variant or file?)"
            )
        n = len(self.anchors)
        for name, shape in outputs.items():
            if shape == (1, n, NUM_COORDS):
                self.regressors = name
            elif shape == (1, n, 1):
                self.classificators = name
        if not (self.regressors and self.classificators):
            raise ConfigError(
                f"model {cfg.name}: want outputs [1,{n},{NUM_COORDS}] and [1,{n},1], "
                f"model has {dict(outputs)}"
            )
        super().bind(input_size, outputs)

    def decode(self, regressors: F32, logits: F32) -> tuple[F32, F32]:
        """Raw [N,16] offsets and [N] logits → candidate boxes [K,4] normalised to the input
        tensor and their scores, before NMS. Pure numpy: unit tests call it on recorded tensors."""
        # Threshold in logit space, then the sigmoid of the few that pass (same result). Few
        # whole-array calls: this runs on the event loop for every frame.
        idx = np.flatnonzero(logits >= self._min_logit)
        scores = sigmoid(np.minimum(np.maximum(logits[idx], -SCORE_CLIP), SCORE_CLIP))
        raw = regressors[idx, :4]
        centre = raw[:, :2] / self._size + self.anchors[idx]  # anchors are 1x1: no size factor
        half = raw[:, 2:] / self._twice_size
        boxes: F32 = np.concatenate((centre - half, centre + half), axis=1)
        ok = (half > 0).all(axis=1)
        if ok.all():
            return boxes, scores
        return boxes[ok], scores[ok]

    def postprocess(self, outputs: Mapping[str, F32], prep: Letterbox) -> list[Detection]:
        boxes, scores = self.decode(
            outputs[self.regressors][0], outputs[self.classificators][0, :, 0]
        )
        cfg = self.config
        boxes, scores = nms(
            boxes, scores, cfg.iou_threshold, cfg.max_detections, weighted=cfg.nms == "weighted"
        )
        return to_detections(self.label, prep.to_frame(boxes), scores)
