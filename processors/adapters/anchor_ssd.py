"""MediaPipe's anchor-SSD detectors as one family: fixed-size anchors, x/y/w/h + keypoint offsets.

Mirrors the graphs' calculators: ImageToTensor letterboxes the frame into the input and maps pixels
to [-1, 1]; SsdAnchors makes fixed-size (1x1) anchors; TensorsToDetections decodes x/y/w/h and
keypoint offsets (in input pixels) against the anchors and clips logits to ±100 before the
sigmoid; NonMaxSuppression is WEIGHTED (box and keypoints averaged) at IoU 0.3. A model of the
family is an `AnchorSsdSpec` (blazeface.py has MediaPipe's); the box is either the decoded one or,
for detectors that find a body through keypoints, derived from two keypoints (`AlignmentRect`).
"""

from __future__ import annotations

import math
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


@dataclass(frozen=True, slots=True)
class AlignmentRect:
    """The box MediaPipe crops a body with: AlignmentPointsRectsCalculator (a square centred on
    keypoint `start`, side twice the start→end distance in pixels, rotated so start→end points at
    `target_angle` degrees) then RectTransformationCalculator (`square_long`, sides × `scale`).
    We report the axis-aligned box around that rotated square."""

    start: int
    end: int
    target_angle: float
    scale: float


@dataclass(frozen=True, slots=True)
class AnchorSsdSpec:
    """One model of the family: SsdAnchorsCalculator and TensorsToDetectionsCalculator options."""

    input_size: Size
    strides: tuple[int, ...]
    interpolated_scale_aspect_ratio: float
    num_keypoints: int
    box: AlignmentRect | None = None  # None: the decoded box

    @property
    def num_coords(self) -> int:
        return 4 + 2 * self.num_keypoints

    def anchors(self) -> F32:
        return ssd_anchors(
            self.input_size,
            list(self.strides),
            interpolated_scale_aspect_ratio=self.interpolated_scale_aspect_ratio,
        )


class AnchorSsdAdapter(Adapter[BlazeFaceConfig]):
    """Decodes any `AnchorSsdSpec`; a subclass names the family and says which spec an entry
    means (blazeface.py: by its `variant`)."""

    input_spec = InputSpec(layout="NHWC", color="RGB", mean=127.5, scale=127.5)  # → [-1, 1]

    def __init__(self, config: BlazeFaceConfig, spec: AnchorSsdSpec) -> None:
        super().__init__(config)
        self.model_spec = spec
        self.anchors = spec.anchors()
        self.regressors = ""
        self.classificators = ""
        self.label = config.labels[0]
        # Keypoints are decoded when they are carried or when the box is derived from them.
        keep = config.keypoints or spec.box is not None
        self._coords = 4 + (2 * spec.num_keypoints if keep else 0)
        self._size = np.array(spec.input_size, np.float32)  # (w, h)
        self._twice_size = self._size * 2  # x / (2w) == x / w / 2 exactly: one call, not two
        t = config.score_threshold
        self._min_logit = -np.inf if t <= 0 else np.inf if t >= 1 else float(np.log(t / (1 - t)))

    def bind(self, input_size: Size, outputs: Mapping[str, tuple[int, ...]]) -> None:
        """Find the outputs by shape ([1,N,C] boxes, [1,N,1] logits), not by name or order."""
        cfg, spec = self.config, self.model_spec
        want = spec.input_size
        if input_size != want:
            raise ConfigError(
                f"model {cfg.name}: BlazeFace {cfg.variant!r} wants a {want[0]}x{want[1]} input, "
                f"the model has {input_size[0]}x{input_size[1]} (wrong variant or file?)"
            )
        n, c = len(self.anchors), spec.num_coords
        for name, shape in outputs.items():
            if shape == (1, n, c):
                self.regressors = name
            elif shape == (1, n, 1):
                self.classificators = name
        if not (self.regressors and self.classificators):
            raise ConfigError(
                f"model {cfg.name}: want outputs [1,{n},{c}] and [1,{n},1], "
                f"model has {dict(outputs)}"
            )
        super().bind(input_size, outputs)

    def decode(self, regressors: F32, logits: F32) -> tuple[F32, F32]:
        """Raw [N,C] offsets and [N] logits → candidates [K,4+2k] (box x1,y1,x2,y2, then the k
        keypoints decoded: none unless carried or needed for the box) normalised to the input
        tensor, and their scores, before NMS. Pure numpy: unit tests call it on recorded tensors."""
        # Threshold in logit space, then the sigmoid of the few that pass (same result). Few
        # whole-array calls: this runs on the event loop for every frame.
        idx = np.flatnonzero(logits >= self._min_logit)
        scores = sigmoid(np.minimum(np.maximum(logits[idx], -SCORE_CLIP), SCORE_CLIP))
        raw = regressors[idx, : self._coords]
        anchors = self.anchors[idx]
        centre = raw[:, :2] / self._size + anchors  # anchors are 1x1: no size factor
        half = raw[:, 2:4] / self._twice_size
        parts = [centre - half, centre + half]
        if self._coords > 4:
            k = (self._coords - 4) // 2
            points = raw[:, 4:].reshape(-1, k, 2) / self._size + anchors[:, None, :]
            parts.append(points.reshape(-1, 2 * k))
        boxes: F32 = np.concatenate(parts, axis=1)
        ok = (half > 0).all(axis=1)
        if ok.all():
            return boxes, scores
        return boxes[ok], scores[ok]

    def postprocess(self, outputs: Mapping[str, F32], prep: Letterbox) -> list[Detection]:
        found, scores = self.decode(
            outputs[self.regressors][0], outputs[self.classificators][0, :, 0]
        )
        cfg = self.config
        # NMS reads the first 4 columns; WEIGHTED averages every column, keypoints too (as
        # MediaPipe's WeightedNonMaxSuppression does).
        found, scores = nms(
            found, scores, cfg.iou_threshold, cfg.max_detections, weighted=cfg.nms == "weighted"
        )
        if found.shape[1] == 4:
            return to_detections(self.label, prep.to_frame(found), scores)
        points = prep.points_to_frame(found[:, 4:].reshape(len(found), -1, 2))
        rule = self.model_spec.box
        boxes = prep.to_frame(found[:, :4]) if rule is None else alignment_boxes(points, prep, rule)
        detections = to_detections(self.label, boxes, scores)
        if not cfg.keypoints:
            return detections
        kept = [b[2] > b[0] and b[3] > b[1] for b in boxes.tolist()]  # as to_detections keeps
        pts = [p for p, k in zip(points.tolist(), kept, strict=True) if k]
        return [
            Detection(d.label, d.score, d.x1, d.y1, d.x2, d.y2, tuple((x, y) for x, y in p))
            for d, p in zip(detections, pts, strict=True)
        ]


def alignment_boxes(points: F32, prep: Letterbox, rule: AlignmentRect) -> F32:
    """Boxes [K,4] normalised to the frame (clipped) from keypoints [K,k,2] normalised to the
    frame (not clipped: a hip below a portrait's edge still places the box)."""
    # Distances and angles are in frame pixels, as MediaPipe measures them (image_size). Without
    # the frame's size the letterboxed picture's stands in (same aspect, up to rounding).
    w, h = prep.frame if prep.frame[0] else prep.resized
    out = np.empty((len(points), 4), np.float32)
    for i, p in enumerate(points.tolist()):
        (x0, y0), (x1, y1) = p[rule.start], p[rule.end]
        dx, dy = (x1 - x0) * w, (y1 - y0) * h
        side = 2.0 * math.hypot(dx, dy) * rule.scale  # square_long: the square stays square
        rotation = math.radians(rule.target_angle) - math.atan2(-dy, dx)
        half = side / 2 * (abs(math.cos(rotation)) + abs(math.sin(rotation)))
        out[i] = (x0 - half / w, y0 - half / h, x0 + half / w, y0 + half / h)
    return np.minimum(np.maximum(out, 0.0, out=out), 1.0, out=out)
