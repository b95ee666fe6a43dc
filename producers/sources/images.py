"""A folder of images or a glob (`frames/*.jpg`), read in name order."""

from __future__ import annotations

import glob
from pathlib import Path
from typing import cast

import cv2

from producers.sources.base import Frame, Source, SourceError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
IMAGES_FPS = 10.0  # images have no frame rate; this is the default pace


def is_images(spec: str) -> bool:
    return any(c in spec for c in "*?[") or Path(spec).expanduser().is_dir()


class ImagesSource(Source):
    def __init__(self, spec: str) -> None:
        super().__init__(spec)
        self._files: list[Path] = []
        self._i = 0

    @property
    def name(self) -> str:
        p = Path(self.spec).expanduser()
        while any(c in p.name for c in "*?[") and p.parent != p:
            p = p.parent
        return p.name or "images"

    @property
    def native_fps(self) -> float:
        return IMAGES_FPS

    def _list(self) -> list[Path]:
        p = Path(self.spec).expanduser()
        if p.is_dir():
            found = [f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES]
        else:
            found = [Path(f) for f in glob.glob(str(p))]
        return sorted(f for f in found if f.is_file())

    def open(self) -> None:
        self._files = self._list()
        self._i = 0
        if not self._files:
            raise SourceError(
                f"no images match {self.spec}: give a folder of .jpg/.png files or a glob "
                "like 'frames/*.jpg' (quoted)",
                permanent=True,
            )

    def read(self) -> Frame | None:
        while self._i < len(self._files):
            f = self._files[self._i]
            self._i += 1
            img = cv2.imread(str(f), cv2.IMREAD_COLOR)
            if img is not None:
                return cast(Frame, img)
        return None

    def close(self) -> None:
        self._files = []
