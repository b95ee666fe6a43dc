"""YOLO detection heads, exported to ONNX or IR without their NMS:

- v5-style [1,N,5+C]: (cx, cy, w, h, objectness, C class scores) per candidate; score =
  objectness x best class score (YOLOv5, YOLOv7);
- v8-style [1,4+C,N]: (cx, cy, w, h, C class scores) per column, no objectness (YOLOv8, YOLOv9,
  YOLO11).

Boxes are in input pixels (or 0..1 with `normalized_boxes`); we keep each candidate's best class,
threshold, and run NMS per class (boxes of different classes never suppress each other, unless
`agnostic_nms`; OpenCV's NMS, the greedy algorithm of `boxes.nms_groups` in C++). Ultralytics
letterboxes RGB scaled to [0,1]: the defaults of `YoloConfig`.
"""

from __future__ import annotations

from collections.abc import Mapping

import cv2
import numpy as np

from evi.errors import ConfigError
from evi.wire import Detection
from processors.adapters.base import (
    F32,
    Adapter,
    InputSpec,
    Ints,
    Letterbox,
    Shape,
    Size,
    image_spec,
    label_names,
    pick_output,
    to_detections,
    wanted_classes,
)
from processors.models import YoloConfig

MAX_CANDIDATES = 30_000  # boxes into NMS at most (Ultralytics' max_nms), best first


def _fits(shape: Shape) -> bool:
    return len(shape) == 3 and shape[0] in (1, -1) and all(d == -1 or d >= 5 for d in shape[1:])


class YoloAdapter(Adapter[YoloConfig]):
    family = "yolo"
    input_spec = InputSpec(layout=None, color="RGB", scale=255.0, resize="letterbox")

    def __init__(self, config: YoloConfig) -> None:
        super().__init__(config)
        self.spec = image_spec(config)
        self.output = ""
        self.version = config.version
        self.classes = 0

    def bind(self, input_size: Size, outputs: Mapping[str, Shape]) -> None:
        cfg = self.config
        self.output = pick_output(cfg, cfg.output, outputs, _fits, "[1,N,5+C] or [1,4+C,N]")
        _, a, b = outputs[self.output]
        if self.version == "auto":  # candidates outnumber features in every real head
            if a < 0 or b < 0:
                raise ConfigError(f"model {cfg.name}: output {outputs[self.output]} has a "
                                  "dynamic dimension: set `version` (v5 or v8)")  # fmt: skip
            self.version = "v8" if a < b else "v5"
        self.classes = b - 5 if self.version == "v5" else a - 4
        if self.classes < 1:
            raise ConfigError(f"model {cfg.name}: a {self.version} head of shape "
                              f"{outputs[self.output]} has no class scores")  # fmt: skip
        super().bind(input_size, outputs)

    def decode(self, head: F32) -> tuple[F32, F32, Ints]:
        """One image's head ([N,5+C] v5, [4+C,N] v8) → candidate boxes [K,4] normalised to the
        input (x1,y1,x2,y2), their scores and class ids, best first, before NMS. Pure numpy."""
        cfg = self.config
        if self.version == "v8":
            cls = head[4:]  # [C, N]
            ids = cls.argmax(axis=0)
            scores = np.take_along_axis(cls, ids[None], axis=0)[0]
            xywh = head[:4].T
        else:
            head = head[head[:, 4] >= cfg.score_threshold]  # objectness bounds the score
            cls = head[:, 5:]
            ids = cls.argmax(axis=1)
            scores = head[:, 4] * np.take_along_axis(cls, ids[:, None], axis=1)[:, 0]
            xywh = head[:, :4]
        keep = np.flatnonzero((scores >= cfg.score_threshold) & wanted_classes(cfg.labels, ids))
        keep = keep[np.argsort(-scores[keep], kind="stable")[:MAX_CANDIDATES]]
        xywh = xywh[keep].astype(np.float32)
        half = xywh[:, 2:] / 2
        boxes = np.concatenate([xywh[:, :2] - half, xywh[:, :2] + half], axis=1)
        if not cfg.normalized_boxes:
            w, h = self.input_size
            boxes /= np.array([w, h, w, h], np.float32)
        return boxes, scores[keep].astype(np.float32), ids[keep].astype(np.int64)

    def suppress(self, boxes: F32, scores: F32, ids: Ints) -> Ints:
        """Indices NMS keeps, best first: per class unless agnostic. OpenCV's NMS keeps what
        `nms_groups` keeps, 2-4x faster on 200-8000 clustered candidates."""
        cfg = self.config
        if not len(boxes):
            return np.zeros((0,), np.int64)
        xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1).tolist()
        if cfg.agnostic_nms:
            kept = cv2.dnn.NMSBoxes(xywh, scores.tolist(), 0.0, cfg.iou_threshold)
        else:
            kept = cv2.dnn.NMSBoxesBatched(
                xywh, scores.tolist(), ids.tolist(), 0.0, cfg.iou_threshold
            )
        return np.asarray(kept, dtype=np.int64).reshape(-1)[: cfg.max_detections]

    def postprocess(self, outputs: Mapping[str, F32], prep: Letterbox) -> list[Detection]:
        boxes, scores, ids = self.decode(outputs[self.output][0])
        keep = self.suppress(boxes, scores, ids)
        labels = label_names(self.config.labels, ids[keep])
        return to_detections(labels, prep.to_frame(boxes[keep]), scores[keep])
