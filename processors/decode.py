"""JPEG bytes → RGB u8 pixels, decoded no larger than the model needs.

libjpeg-turbo (through simplejpeg) can decode at 1/2, 1/4 or 1/8 scale in the DCT domain, which
skips most of the IDCT and colour conversion work: a 1280x720 frame for a 128x128 model decodes at
1/8 scale. We ask for the smallest scale that still covers the letterboxed fit of the frame into
`target` (or, for models that stretch, `target` itself), so the following resize only ever
shrinks. Without simplejpeg, OpenCV decodes full size.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import numpy.typing as npt

from evi.errors import BadFrame
from processors.jpeg_header import DecodeBudget, read_header

try:
    import simplejpeg
except ImportError:  # pragma: no cover - simplejpeg is a dependency; OpenCV is the fallback
    simplejpeg = None

U8 = npt.NDArray[np.uint8]


DEFAULT_BUDGET = DecodeBudget()


def fit_size(frame: tuple[int, int], target: tuple[int, int]) -> tuple[int, int]:
    """The size `frame` (w, h) takes when scaled to fit inside `target` keeping its aspect."""
    s = min(target[0] / frame[0], target[1] / frame[1])
    return max(1, math.ceil(frame[0] * s)), max(1, math.ceil(frame[1] * s))


def decode_jpeg(
    jpeg: bytes, target: tuple[int, int] | None = None, *, keep_aspect: bool = True,
    budget: DecodeBudget = DEFAULT_BUDGET,
) -> U8:  # fmt: skip
    """Decode to RGB u8 [H,W,3]; with `target` (w, h), at the smallest DCT scale whose image still
    covers the frame's fit into `target` (`keep_aspect`, as a letterbox scales it) or `target`
    itself (as a stretch does). Raises only BadFrame: for corrupt, truncated, empty or
    unsupported input, for a frame over `budget`, and for whatever exception the codec raises."""
    if not jpeg:
        raise BadFrame("corrupt-jpeg", "JPEG is empty")
    header = read_header(jpeg)
    budget.check(header)
    if simplejpeg is None:  # pragma: no cover
        return decode_jpeg_cv2(jpeg)
    w, h = header.width, header.height
    try:
        if target is None:
            min_w, min_h = 0, 0
        else:
            min_w, min_h = fit_size((w, h), target) if keep_aspect else target
        # strict: libjpeg's warnings (premature end of data, corrupt entropy data) are errors.
        image: U8 = simplejpeg.decode_jpeg(
            jpeg, colorspace="RGB", min_width=min_w, min_height=min_h, strict=True
        )
    except Exception as e:  # the codec's own types vary (ValueError, KeyError, …): all the frame's
        raise BadFrame("corrupt-jpeg", f"cannot decode JPEG: {type(e).__name__}: {e}") from None
    if image.ndim != 3 or image.shape[2] != 3:  # pragma: no cover - RGB was asked for
        raise BadFrame("corrupt-jpeg", f"decoded to shape {image.shape}, not RGB")
    return image


def decode_jpeg_cv2(jpeg: bytes) -> U8:
    """OpenCV full-size decode. It decodes truncated data silently, so a missing end-of-image
    marker is checked first."""
    header = read_header(jpeg)
    DEFAULT_BUDGET.check(header)
    if b"\xff\xd9" not in jpeg[-64:]:  # EOI, allowing some trailing padding
        raise BadFrame("corrupt-jpeg", "JPEG has no end-of-image marker (truncated?)")
    bgr = cv2.imdecode(np.frombuffer(jpeg, dtype=np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise BadFrame("corrupt-jpeg", "OpenCV cannot decode the JPEG")
    return np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), dtype=np.uint8)

