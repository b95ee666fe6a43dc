"""The adapter API, and the box maths adapters share (letterbox, anchors, NMS), in pure numpy.

An adapter turns one model's tensors into detections. It declares its input to OpenVINO's
PrePostProcessor (we always feed u8 NHWC RGB at the model's input size; layout, colour order,
element type, mean and scale are compiled into the model), letterboxes a frame into that size, and
decodes the outputs. It never runs the model: `processors.runtime` does, knowing no adapter.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Generic, Literal, TypeVar

import cv2
import numpy as np
import numpy.typing as npt

from evi.errors import ConfigError
from evi.wire import Detection
from processors.models import ModelConfigBase

if TYPE_CHECKING:
    from openvino import Model
    from openvino.preprocess import PrePostProcessor

F32 = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]
Size = tuple[int, int]  # (width, height), as OpenCV takes it
C = TypeVar("C", bound=ModelConfigBase)


@dataclass(frozen=True, slots=True)
class InputSpec:
    """What the model's input wants, declared once per adapter class and compiled by OpenVINO."""

    layout: str = "NHWC"  # the model's input layout; the tensor we feed is always NHWC
    color: Literal["RGB", "BGR"] = "RGB"
    mean: float = 0.0  # model input = (u8 pixel - mean) / scale
    scale: float = 1.0


@dataclass(frozen=True, slots=True)
class Letterbox:
    """Where a frame landed in the input tensor: it was scaled to `resized`, placed at `pad`."""

    tensor: Size
    resized: Size
    pad: tuple[int, int]

    def to_frame(self, boxes: F32) -> F32:
        """Boxes [K,4] (x1,y1,x2,y2) normalised to the tensor → normalised to the frame, clipped."""
        tw, th = self.tensor
        rw, rh = self.resized
        px, py = self.pad
        out = np.empty_like(boxes)
        out[:, 0::2] = (boxes[:, 0::2] * tw - px) / rw
        out[:, 1::2] = (boxes[:, 1::2] * th - py) / rh
        np.clip(out, 0.0, 1.0, out=out)
        return out


def letterbox_geometry(frame: Size, tensor: Size) -> Letterbox:
    """Scale to fit inside `tensor` keeping the aspect ratio, centred (as MediaPipe pads)."""
    fw, fh = frame
    tw, th = tensor
    s = min(tw / fw, th / fh)
    rw, rh = max(1, min(tw, round(fw * s))), max(1, min(th, round(fh * s)))
    return Letterbox(tensor=tensor, resized=(rw, rh), pad=((tw - rw) // 2, (th - rh) // 2))


def letterbox(image: U8, tensor: Size) -> tuple[U8, Letterbox]:
    """An RGB u8 image [H,W,3] → a [1,h,w,3] u8 batch of the tensor size with black borders."""
    lb = letterbox_geometry((image.shape[1], image.shape[0]), tensor)
    tw, th = tensor
    rw, rh = lb.resized
    px, py = lb.pad
    batch = np.zeros((1, th, tw, 3), dtype=np.uint8)
    if (rw, rh) == (image.shape[1], image.shape[0]):
        batch[0, py : py + rh, px : px + rw] = image
    else:
        interp = cv2.INTER_AREA if rw < image.shape[1] / 2 else cv2.INTER_LINEAR
        batch[0, py : py + rh, px : px + rw] = cv2.resize(image, (rw, rh), interpolation=interp)
    return batch, lb


def sigmoid(x: F32) -> F32:
    """Logistic function without overflow for any float32 input."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(np.float32)


def ssd_anchors(
    tensor: Size,
    strides: list[int],
    *,
    aspect_ratios: int = 1,
    interpolated_scale_aspect_ratio: float = 1.0,
    offset: tuple[float, float] = (0.5, 0.5),
) -> F32:
    """Anchor centres [N,2] (x, y normalised) as MediaPipe's SsdAnchorsCalculator makes them with
    `fixed_anchor_size: true` (every anchor is 1x1, so only centres matter).

    Consecutive layers with the same stride share one grid; each layer adds `aspect_ratios`
    anchors per cell, plus one more when `interpolated_scale_aspect_ratio > 0`.
    """
    w, h = tensor
    per_layer = aspect_ratios + (1 if interpolated_scale_aspect_ratio > 0 else 0)
    grids: list[F32] = []
    layer = 0
    while layer < len(strides):
        stride = strides[layer]
        same = layer
        while same < len(strides) and strides[same] == stride:
            same += 1
        fw, fh = -(-w // stride), -(-h // stride)  # ceil, as MediaPipe
        xs = (np.arange(fw, dtype=np.float32) + offset[0]) / fw
        ys = (np.arange(fh, dtype=np.float32) + offset[1]) / fh
        gx, gy = np.meshgrid(xs, ys)  # row-major: y outer, x inner
        cells = np.stack([gx.ravel(), gy.ravel()], axis=1)
        grids.append(np.repeat(cells, per_layer * (same - layer), axis=0))
        layer = same
    return np.concatenate(grids).astype(np.float32)


def iou_one(box: F32, boxes: F32) -> F32:
    """IoU of one box [4] with many [K,4]; boxes are (x1,y1,x2,y2)."""
    ix = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    iy = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = ix * iy
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area + areas - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0).astype(np.float32)


def nms(
    boxes: F32, scores: F32, iou_threshold: float, max_out: int, *, weighted: bool = False
) -> tuple[F32, F32]:
    """Greedy NMS by descending score. `weighted` is MediaPipe's variant: each kept box becomes
    the score-weighted mean of every box overlapping it by more than the threshold (itself too),
    keeping the top score. Returns (boxes [K,4], scores [K])."""
    order = np.argsort(-scores, kind="stable")
    kept_boxes: list[F32] = []
    kept_scores: list[float] = []
    while order.size and len(kept_boxes) < max_out:
        top = order[0]
        overlap = iou_one(boxes[top], boxes[order])
        group = overlap > iou_threshold
        group[0] = True  # a degenerate box has IoU 0 with itself; it still leads its group
        if weighted:
            w = scores[order[group]]
            kept_boxes.append((boxes[order[group]] * w[:, None]).sum(axis=0) / w.sum())
        else:
            kept_boxes.append(boxes[top])
        kept_scores.append(float(scores[top]))
        order = order[~group]
    if not kept_boxes:
        return np.zeros((0, 4), np.float32), np.zeros((0,), np.float32)
    return np.stack(kept_boxes).astype(np.float32), np.asarray(kept_scores, np.float32)


def to_detections(label: str, boxes: F32, scores: F32) -> list[Detection]:
    """Frame-normalised boxes → Detections, dropping boxes that clipping left empty."""
    return [
        Detection(label, s, b[0], b[1], b[2], b[3])
        for b, s in zip(boxes.tolist(), scores.tolist(), strict=True)
        if b[2] > b[0] and b[3] > b[1]
    ]


class Adapter(ABC, Generic[C]):
    """One model family's input declaration and output decoding.

    Life cycle: constructed from its config; `configure` (called by the runtime with the model
    before compiling) declares the input and learns the model's facts through `bind`; then
    `preprocess` and `postprocess` per frame, from any thread (they keep no per-frame state).
    """

    family: ClassVar[str]
    input_spec: ClassVar[InputSpec] = InputSpec()

    def __init__(self, config: C) -> None:
        self.config = config
        self._input_size: Size | None = None

    @property
    def input_size(self) -> Size:
        """(width, height) of the model input, known once bound."""
        if self._input_size is None:
            raise RuntimeError(f"{type(self).__name__} is not bound to a model yet")
        return self._input_size

    def configure(self, ppp: PrePostProcessor, model: Model) -> None:
        """Declare u8 NHWC RGB input of the model's size to `ppp`, then `bind` the model's facts."""
        from openvino import Layout, Type
        from openvino.preprocess import ColorFormat

        if len(model.inputs) != 1:
            raise ConfigError(f"{self.config.name}: want one input, model has {len(model.inputs)}")
        spec = self.input_spec
        shape = model.input().get_partial_shape()
        hi, wi = spec.layout.index("H"), spec.layout.index("W")
        if shape.rank.is_dynamic or not (shape[hi].is_static and shape[wi].is_static):
            raise ConfigError(f"{self.config.name}: input shape {shape} has no static H and W")
        size = (shape[wi].get_length(), shape[hi].get_length())

        inp = ppp.input()
        inp.tensor().set_element_type(Type.u8).set_layout(Layout("NHWC")).set_color_format(
            ColorFormat.RGB
        )
        inp.model().set_layout(Layout(spec.layout))
        steps = inp.preprocess()
        if spec.color == "BGR":
            steps.convert_color(ColorFormat.BGR)
        steps.convert_element_type(Type.f32)
        if spec.mean:
            steps.mean(spec.mean)
        if spec.scale != 1.0:
            steps.scale(spec.scale)

        outputs: dict[str, tuple[int, ...]] = {}
        for out in model.outputs:
            ps = out.get_partial_shape()
            outputs[out.get_any_name()] = tuple(d.get_length() if d.is_static else -1 for d in ps)
        self.bind(size, outputs)

    def bind(self, input_size: Size, outputs: Mapping[str, tuple[int, ...]]) -> None:
        """Learn the model's input size and output names/shapes (plain data: tests call it)."""
        self._input_size = input_size

    def preprocess(self, image: U8) -> tuple[U8, Letterbox]:
        """RGB u8 [H,W,3] → the u8 NHWC batch the compiled model takes, and where it landed."""
        return letterbox(image, self.input_size)

    @abstractmethod
    def postprocess(self, outputs: Mapping[str, F32], prep: Letterbox) -> list[Detection]:
        """Model outputs (by name) → detections normalised to the frame."""
