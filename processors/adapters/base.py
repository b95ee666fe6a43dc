"""The adapter API, and the decode helpers adapters share (labels, outputs, input layout).

An adapter turns one model's tensors into detections. It declares its input to OpenVINO's
PrePostProcessor (we always feed u8 NHWC RGB at the model's input size; layout, colour order,
element type, mean and scale are compiled into the model), letterboxes or stretches a frame into
that size, and decodes the outputs. It never runs the model: `processors.runtime` does, knowing no
adapter. The box maths (letterbox, stretch, anchors, NMS) is in `boxes.py`, re-exported here.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Generic, Literal, TypeVar

import numpy as np
import numpy.typing as npt

from evi.errors import ConfigError
from evi.wire import Detection
from processors.adapters.boxes import (
    F32,
    U8,
    Ints,
    Letterbox,
    Size,
    iou_one,
    letterbox,
    letterbox_geometry,
    nms,
    nms_groups,
    sigmoid,
    ssd_anchors,
    stretch,
)
from processors.models import ImageModelConfig, ModelConfigBase

if TYPE_CHECKING:
    from openvino import Model
    from openvino.preprocess import PrePostProcessor

__all__ = [
    "F32", "U8", "Adapter", "InputSpec", "Ints", "Letterbox", "Shape", "Size", "image_spec",
    "input_layout", "iou_one", "label_names", "letterbox", "letterbox_geometry", "nms",
    "nms_groups", "pick_output", "sigmoid", "ssd_anchors", "stretch", "to_detections",
    "wanted_classes",
]  # fmt: skip

Shape = tuple[int, ...]  # an output's shape, -1 for a dynamic dimension
C = TypeVar("C", bound=ModelConfigBase)
Channels = float | tuple[float, ...]  # one value for all channels, or one per channel


@dataclass(frozen=True, slots=True)
class InputSpec:
    """What the model's input wants, compiled by OpenVINO; per family, or from the entry."""

    layout: str | None = "NHWC"  # the model's input layout (None: as the model says); we feed NHWC
    color: Literal["RGB", "BGR"] = "RGB"
    mean: Channels = 0.0  # model input = (u8 pixel - mean) / scale, in the model's colour order
    scale: Channels = 1.0
    resize: Literal["letterbox", "stretch"] = "letterbox"


def image_spec(config: ImageModelConfig) -> InputSpec:
    """The input an OMZ/ONNX-style entry describes (layout None: read from the model)."""
    return InputSpec(config.layout, config.color, config.mean, config.scale, config.resize)


def to_detections(labels: str | Sequence[str], boxes: F32, scores: F32) -> list[Detection]:
    """Frame-normalised boxes → Detections (one label for all, or one each), dropping boxes that
    clipping left empty."""
    names = [labels] * len(scores) if isinstance(labels, str) else labels
    return [
        Detection(n, s, b[0], b[1], b[2], b[3])
        for n, b, s in zip(names, boxes.tolist(), scores.tolist(), strict=True)
        if b[2] > b[0] and b[3] > b[1]
    ]


def label_names(labels: Mapping[int, str], ids: Ints) -> list[str]:
    """Class ids → names; an id the mapping lacks is named by its number."""
    return [labels.get(i, str(i)) for i in ids.tolist()]


def wanted_classes(labels: Mapping[int, str], ids: Ints) -> npt.NDArray[np.bool_]:
    """Which ids to keep: all without labels, else only those the labels name."""
    return np.isin(ids, list(labels)) if labels else np.ones(ids.shape, dtype=bool)


def pick_output(
    config: ModelConfigBase, configured: str | None, outputs: Mapping[str, Shape],
    fits: Callable[[Shape], bool], want: str,
) -> str:  # fmt: skip
    """The output to decode: the configured one, or the only one whose shape `fits`."""
    names = [configured] if configured else [n for n, s in outputs.items() if fits(s)]
    if len(names) == 1 and names[0] in outputs and fits(outputs[names[0]]):
        return names[0]
    which = f"output {configured!r}" if configured else "one output"
    hint = "; set `output`" if len(names) > 1 else ""
    raise ConfigError(f"model {config.name}: want {which} {want}, model has {dict(outputs)}{hint}")


def input_layout(model: Model, configured: str | None, name: str) -> str:
    """The model input's layout: as configured, else its rt_info, else the 3-channel axis of a
    4-D shape ([1,3,H,W] NCHW, [1,H,W,3] NHWC)."""
    from openvino import layout_helpers

    if configured:
        return configured
    layout = layout_helpers.get_layout(model.input())
    if not layout.empty:
        return str(layout.to_string())
    shape = model.input().get_partial_shape()
    if shape.rank.is_static and shape.rank.get_length() == 4:
        first, last = (shape[i].is_static and shape[i].get_length() == 3 for i in (1, 3))
        if first != last:
            return "NCHW" if first else "NHWC"
    raise ConfigError(f"model {name}: cannot tell the layout of input {shape}: set `layout`")


class Adapter(ABC, Generic[C]):
    """One model family's input declaration and output decoding.

    Life cycle: constructed from its config; `configure` (called by the runtime with the model
    before compiling) declares the input and learns the model's facts through `bind`; then
    `preprocess` and `postprocess` per frame, from any thread (they keep no per-frame state).
    """

    family: ClassVar[str]
    input_spec: ClassVar[InputSpec] = InputSpec()  # the family's; `self.spec` is this model's

    def __init__(self, config: C) -> None:
        self.config = config
        self.spec = self.input_spec
        self._input_size: Size | None = None

    @property
    def input_size(self) -> Size:
        """(width, height) of the model input, known once bound."""
        if self._input_size is None:
            raise RuntimeError(f"{type(self).__name__} is not bound to a model yet")
        return self._input_size

    def configure(self, ppp: PrePostProcessor, model: Model) -> None:
        """Declare u8 NHWC RGB input of the model's size to `ppp`, then `bind` the model's facts."""
        from openvino import Layout, Type, layout_helpers
        from openvino.preprocess import ColorFormat

        name = self.config.name
        if len(model.inputs) != 1:
            raise ConfigError(f"model {name}: want one input, model has {len(model.inputs)}")
        spec = self.spec
        layout = Layout(input_layout(model, spec.layout, name))
        shape = model.input().get_partial_shape()
        hi, wi = layout_helpers.height_idx(layout), layout_helpers.width_idx(layout)
        if shape.rank != 4 or not (shape[hi].is_static and shape[wi].is_static):
            raise ConfigError(f"model {name}: input {shape} is not 4-D with static H and W")
        size = (shape[wi].get_length(), shape[hi].get_length())

        inp = ppp.input()
        inp.tensor().set_element_type(Type.u8).set_layout(Layout("NHWC")).set_color_format(
            ColorFormat.RGB
        )
        inp.model().set_layout(layout)
        steps = inp.preprocess()
        if spec.color == "BGR":
            steps.convert_color(ColorFormat.BGR)
        steps.convert_element_type(Type.f32)
        if spec.mean != 0.0:
            steps.mean(_ppp(spec.mean))
        if spec.scale != 1.0:
            steps.scale(_ppp(spec.scale))

        outputs: dict[str, Shape] = {}
        for out in model.outputs:
            ps = out.get_partial_shape()
            outputs[out.get_any_name()] = tuple(d.get_length() if d.is_static else -1 for d in ps)
        self.bind(size, outputs)

    def bind(self, input_size: Size, outputs: Mapping[str, Shape]) -> None:
        """Learn the model's input size and output names/shapes (plain data: tests call it)."""
        self._input_size = input_size

    def preprocess(self, image: U8) -> tuple[U8, Letterbox]:
        """RGB u8 [H,W,3] → the u8 NHWC batch the compiled model takes, and where it landed."""
        if self.spec.resize == "stretch":
            return stretch(image, self.input_size)
        return letterbox(image, self.input_size)

    @abstractmethod
    def postprocess(self, outputs: Mapping[str, F32], prep: Letterbox) -> list[Detection]:
        """Model outputs (by name) → detections normalised to the frame."""


def _ppp(v: Channels) -> float | list[float]:
    return float(v) if isinstance(v, float | int) else [float(x) for x in v]
