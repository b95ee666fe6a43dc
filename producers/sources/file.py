"""A video file OpenCV/FFmpeg can read; optional start offset and duration (seconds)."""

from __future__ import annotations

from pathlib import Path

import cv2

from producers.sources.base import Frame, SourceError
from producers.sources.capture import CaptureSource


class FileSource(CaptureSource):
    def __init__(self, spec: str, start: float = 0.0, duration: float | None = None) -> None:
        super().__init__(spec)
        self.path = Path(spec).expanduser()
        self.start = start
        self.duration = duration
        self._frames_left: int | None = None
        self._first: Frame | None = None

    @property
    def name(self) -> str:
        return self.path.stem

    def _capture(self) -> cv2.VideoCapture:
        if not self.path.is_file():
            raise SourceError(
                f"video file {self.path} does not exist: check the --source path", permanent=True
            )
        return cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG)

    def _open_failed(self) -> SourceError:
        return SourceError(
            f"{self.path} is not a video OpenCV/FFmpeg can read: convert it (e.g. to H.264 MP4 "
            "or MJPG AVI) or pass an image folder instead",
            permanent=True,
        )

    def _after_open(self, cap: cv2.VideoCapture) -> None:
        if self.start > 0:
            cap.set(cv2.CAP_PROP_POS_MSEC, self.start * 1000.0)
        self._frames_left = None
        if self.duration is not None:
            self._frames_left = max(1, round(self.duration * (self.native_fps or 25.0)))

    def open(self) -> None:
        super().open()
        # A file OpenCV opens but cannot decode (e.g. text renamed .mp4) fails on its first read.
        self._first = super().read()
        if self._first is None:
            self.close()
            if self.start > 0:
                raise SourceError(
                    f"{self.path}: no frames after --start {self.start:g}s: use a smaller --start",
                    permanent=True,
                )
            raise self._open_failed()

    def read(self) -> Frame | None:
        if self._frames_left is not None:
            if self._frames_left <= 0:
                return None
            self._frames_left -= 1
        if self._first is not None:
            first, self._first = self._first, None
            return first
        return super().read()
