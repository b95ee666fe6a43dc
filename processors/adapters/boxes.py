"""Box maths the adapters share, in pure numpy: placing a frame into the input tensor (letterbox
or stretch) and back, SSD anchor centres, IoU and non-maximum suppression."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import cv2
import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]
Ints = npt.NDArray[np.int64]
Size = tuple[int, int]  # (width, height), as OpenCV takes it


@dataclass(frozen=True, slots=True)
class Letterbox:
    """Where a frame landed in the input tensor: it was scaled to `resized`, placed at `pad`.
    A stretched frame has `resized == tensor` and no pad: tensor coordinates are frame ones."""

    tensor: Size
    resized: Size
    pad: tuple[int, int]
    # The picture placed, when known (the frame, maybe decoded smaller); not part of where it
    # landed, so equality ignores it.
    frame: Size = field(default=(0, 0), compare=False)

    def to_frame(self, boxes: F32) -> F32:
        """Boxes [K,4] (x1,y1,x2,y2) normalised to the tensor → normalised to the frame, clipped."""
        mul, sub, div = _box_affine(self.tensor, self.resized, self.pad)
        out: F32 = (boxes * mul - sub) / div
        return np.minimum(np.maximum(out, 0.0, out=out), 1.0, out=out)

    def points_to_frame(self, points: F32) -> F32:
        """Points [...,2] (x, y) normalised to the tensor → normalised to the frame, not clipped
        (a keypoint may lie outside the picture)."""
        mul, sub, div = _box_affine(self.tensor, self.resized, self.pad)
        out: F32 = (points * mul[:2] - sub[:2]) / div[:2]
        return out


@lru_cache(maxsize=64)
def _box_affine(tensor: Size, resized: Size, pad: tuple[int, int]) -> tuple[F32, F32, F32]:
    """(x1,y1,x2,y2)-shaped factors of `to_frame`, made once per frame geometry: a frame's
    postprocess runs on the event loop, where every small numpy call counts."""
    (tw, th), (rw, rh), (px, py) = tensor, resized, pad
    return (np.array([tw, th, tw, th], np.float32), np.array([px, py, px, py], np.float32),
            np.array([rw, rh, rw, rh], np.float32))  # fmt: skip


def letterbox_geometry(frame: Size, tensor: Size) -> Letterbox:
    """Scale to fit inside `tensor` keeping the aspect ratio, centred (as MediaPipe pads)."""
    fw, fh = frame
    tw, th = tensor
    s = min(tw / fw, th / fh)
    rw, rh = max(1, min(tw, round(fw * s))), max(1, min(th, round(fh * s)))
    pad = ((tw - rw) // 2, (th - rh) // 2)
    return Letterbox(tensor=tensor, resized=(rw, rh), pad=pad, frame=frame)


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


def stretch(image: U8, tensor: Size) -> tuple[U8, Letterbox]:
    """An RGB u8 image [H,W,3] → a [1,h,w,3] u8 batch of the tensor size, aspect not kept (as
    most Open Model Zoo models were trained)."""
    tw, th = tensor
    batch = np.empty((1, th, tw, 3), dtype=np.uint8)
    if (tw, th) == (image.shape[1], image.shape[0]):
        batch[0] = image
    else:
        shrink = tw < image.shape[1] / 2 and th < image.shape[0] / 2
        interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
        cv2.resize(image, tensor, dst=batch[0], interpolation=interp)
    frame = (image.shape[1], image.shape[0])
    return batch, Letterbox(tensor=tensor, resized=tensor, pad=(0, 0), frame=frame)


def sigmoid(x: F32) -> F32:
    """Logistic function without overflow for any float32 input (tanh saturates, exp does not)."""
    out: F32 = np.tanh(np.multiply(x, 0.5, dtype=np.float32))
    return np.add(np.multiply(out, 0.5, out=out), 0.5, out=out)


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
    # np.maximum(…, 0), not np.clip: the same values without clip's Python-level wrappers.
    ix = np.maximum(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0)
    iy = np.maximum(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0)
    inter = ix * iy
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area + areas - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0).astype(np.float32)


def nms_groups(boxes: F32, scores: F32, iou_threshold: float, max_out: int) -> list[Ints]:
    """Greedy NMS by descending score: per kept box (at most `max_out`), the indices of its group,
    itself first, then the boxes it suppresses (IoU above the threshold)."""
    order = np.argsort(-scores, kind="stable")
    groups: list[Ints] = []
    while order.size and len(groups) < max_out:
        group = iou_one(boxes[order[0]], boxes[order]) > iou_threshold
        group[0] = True  # a degenerate box has IoU 0 with itself; it still leads its group
        groups.append(order[group])
        order = order[~group]
    return groups


def nms(
    boxes: F32, scores: F32, iou_threshold: float, max_out: int, *, weighted: bool = False
) -> tuple[F32, F32]:
    """Greedy NMS. `weighted` is MediaPipe's variant: each kept box becomes the score-weighted
    mean of its group, keeping the top score. Returns (boxes [K,4], scores [K])."""
    groups = nms_groups(boxes, scores, iou_threshold, max_out)
    if not groups:
        return np.zeros((0, 4), np.float32), np.zeros((0,), np.float32)
    if weighted:
        kept = [(boxes[g] * scores[g, None]).sum(axis=0) / scores[g].sum() for g in groups]
    else:
        kept = [boxes[g[0]] for g in groups]
    top = np.array([g[0] for g in groups])
    return np.stack(kept).astype(np.float32), scores[top].astype(np.float32)
