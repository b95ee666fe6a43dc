"""Resize and JPEG-encode BGR frames.

cv2.imencode vs simplejpeg, both libjpeg-turbo, q80, 4:2:0, sample clip, this 2-core dev VM
(bench/producer.py): 640x480 0.9-1.2 ms vs 0.9-1.2 ms; 1280x720 2.7-3.4 ms vs 2.7-3.5 ms, a tie
within run-to-run noise (simplejpeg's default 4:4:4 was ~2x slower and ~25 % larger). cv2 stays
the default because capture already needs it; simplejpeg is selectable
(`EVI_PUBLISHER__ENCODER=simplejpeg`).
"""

from __future__ import annotations

from typing import Literal, cast

import cv2
import numpy as np
import simplejpeg

from producers.sources.base import Frame

Backend = Literal["cv2", "simplejpeg"]


def target_size(w: int, h: int, width: int | None, height: int | None) -> tuple[int, int]:
    """Output size: both given = exact; one given = keep aspect ratio; none = unchanged."""
    if width and height:
        return width, height
    if width:
        return width, max(2, round(h * width / w))
    if height:
        return max(2, round(w * height / h)), height
    return w, h


class Encoder:
    def __init__(
        self,
        quality: int = 80,
        width: int | None = None,
        height: int | None = None,
        backend: Backend = "cv2",
    ) -> None:
        if not 1 <= quality <= 100:
            raise ValueError(f"JPEG quality {quality} is not in 1..100")
        self.quality = quality
        self.width = width
        self.height = height
        self.backend = backend
        self._params = [cv2.IMWRITE_JPEG_QUALITY, quality]

    def resize(self, frame: Frame) -> Frame:
        h, w = frame.shape[:2]
        tw, th = target_size(w, h, self.width, self.height)
        if (tw, th) == (w, h):
            return frame
        interp = cv2.INTER_AREA if tw < w else cv2.INTER_LINEAR
        return cast(Frame, cv2.resize(frame, (tw, th), interpolation=interp))

    def encode(self, frame: Frame) -> bytes:
        """JPEG bytes of a BGR frame (already resized)."""
        if self.backend == "simplejpeg":
            if not frame.flags.c_contiguous:
                frame = np.ascontiguousarray(frame)
            return simplejpeg.encode_jpeg(  # type: ignore[no-any-return]
                frame, quality=self.quality, colorspace="BGR", colorsubsampling="420"
            )
        ok, buf = cv2.imencode(".jpg", frame, self._params)
        if not ok:
            raise ValueError(f"OpenCV could not encode a {frame.shape} frame as JPEG")
        return buf.tobytes()
