"""Open Model Zoo SSD detectors: one DetectionOutput [1,1,N,7] whose rows are
(image_id, label, conf, x_min, y_min, x_max, y_max), corners normalised to the input.

face-detection-retail-0004/0005, person-detection-retail-0013, vehicle-detection-adas-0002,
pedestrian-and-vehicle-detector-adas-0001, person-detection-020x, ssdlite_mobilenet_v2 (IR) and
other SSDs converted with a DetectionOutput layer. The model has already done NMS; rows after
the first image_id of -1 are not detections. OMZ IR wants BGR 0..255, NCHW, stretched to its
size: the defaults of `SsdConfig`.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

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
from processors.models import SsdConfig

ROW = 7  # image_id, label, conf, x_min, y_min, x_max, y_max


def _fits(shape: Shape) -> bool:
    return len(shape) == 4 and shape[-1] == ROW and shape[0] in (1, -1) and shape[1] in (1, -1)


class SsdAdapter(Adapter[SsdConfig]):
    family = "ssd"
    input_spec = InputSpec(layout=None, color="BGR", resize="stretch")

    def __init__(self, config: SsdConfig) -> None:
        super().__init__(config)
        self.spec = image_spec(config)
        self.output = ""

    def bind(self, input_size: Size, outputs: Mapping[str, Shape]) -> None:
        want = f"[1,1,N,{ROW}] (DetectionOutput)"
        self.output = pick_output(self.config, self.config.output, outputs, _fits, want)
        super().bind(input_size, outputs)

    def decode(self, rows: F32) -> tuple[F32, F32, Ints]:
        """DetectionOutput rows [N,7] → boxes [K,4] normalised to the input, scores and class ids,
        by descending score, thresholded, filtered to the labelled classes. Pure numpy."""
        cfg = self.config
        end = np.flatnonzero(rows[:, 0] < 0)
        if end.size:
            rows = rows[: end[0]]
        ids = rows[:, 1].astype(np.int64)
        keep = np.flatnonzero((rows[:, 2] >= cfg.score_threshold) & wanted_classes(cfg.labels, ids))
        keep = keep[np.argsort(-rows[keep, 2], kind="stable")[: cfg.max_detections]]
        return rows[keep, 3:7].astype(np.float32), rows[keep, 2].astype(np.float32), ids[keep]

    def postprocess(self, outputs: Mapping[str, F32], prep: Letterbox) -> list[Detection]:
        boxes, scores, ids = self.decode(outputs[self.output].reshape(-1, ROW))
        return to_detections(label_names(self.config.labels, ids), prep.to_frame(boxes), scores)
