"""A Source over cv2.VideoCapture: the shared part of file, camera and URL sources."""

from __future__ import annotations

import math
from abc import abstractmethod
from typing import cast

import cv2

from producers.sources.base import Frame, Source, SourceError


class CaptureSource(Source):
    """Owns one cv2.VideoCapture; subclasses say how to open it."""

    def __init__(self, spec: str) -> None:
        super().__init__(spec)
        self._cap: cv2.VideoCapture | None = None
        self._fps: float | None = None

    @abstractmethod
    def _capture(self) -> cv2.VideoCapture:
        """A new VideoCapture; may raise SourceError before trying."""

    @abstractmethod
    def _open_failed(self) -> SourceError:
        """The error to raise when OpenCV could not open the source."""

    def _after_open(self, cap: cv2.VideoCapture) -> None:
        """Hook: seek, set properties."""

    @property
    def native_fps(self) -> float | None:
        return self._fps

    def open(self) -> None:
        self.close()
        cap = self._capture()
        if not cap.isOpened():
            cap.release()
            raise self._open_failed()
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self._fps = fps if math.isfinite(fps) and 0.5 <= fps <= 1000 else None
        self._after_open(cap)
        self._cap = cap

    def read(self) -> Frame | None:
        if self._cap is None:
            raise SourceError(f"{self.spec} is not open")
        ok, frame = self._cap.read()
        if not ok or frame is None:
            return None
        if frame.ndim == 2:
            frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
        return cast(Frame, frame)

    def position_ms(self) -> float:
        return float(self._cap.get(cv2.CAP_PROP_POS_MSEC)) if self._cap is not None else 0.0

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
