"""A local camera: an index (`0`) or a V4L2 device path (`/dev/video0`)."""

from __future__ import annotations

import re
from pathlib import Path

import cv2

from producers.sources.base import SourceError
from producers.sources.capture import CaptureSource

_DEVICE = re.compile(r"^(?:/dev/video)?(\d+)$")


def is_camera(spec: str) -> bool:
    return bool(_DEVICE.match(spec))


class CameraSource(CaptureSource):
    live = True

    def __init__(self, spec: str, width: int | None = None, height: int | None = None) -> None:
        super().__init__(spec)
        m = _DEVICE.match(spec)
        if not m:
            raise SourceError(f"{spec!r} is not a camera: use an index or /dev/videoN", True)
        self.index = int(m.group(1))
        self.device = Path(f"/dev/video{self.index}")
        self.width = width
        self.height = height

    @property
    def name(self) -> str:
        return f"cam{self.index}"

    def _capture(self) -> cv2.VideoCapture:
        if not self.device.exists():
            raise SourceError(
                f"camera {self.device} does not exist: list cameras with `ls /dev/video*` "
                "and pass one as --source",
                permanent=True,
            )
        return cv2.VideoCapture(self.index, cv2.CAP_V4L2)

    def _open_failed(self) -> SourceError:
        return SourceError(
            f"camera {self.device} could not be opened: is it in use or not readable "
            "(add the user to the 'video' group)?"
        )

    def _after_open(self, cap: cv2.VideoCapture) -> None:
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # newest frame, not a backlog
        if self.width and self.height:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
