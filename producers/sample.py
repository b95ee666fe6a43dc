"""A deterministic generated clip with a real face, for demos and tests (`evi sample`).

Layout of `SampleClip(width, height, frames)`; frames are BGR (OpenCV order), `frame(i)` for any
i >= 0 (i wraps at `frames`, so a looping clip repeats exactly):

* background: a fixed textured pattern (gradient, stripes and seeded noise) that drifts 2 px to
  the left per frame, so consecutive frames differ;
* every frame with `(i % frames) % 10 == 9` (9, 19, 29, ...) shows ONLY the background;
* every other frame shows `skimage.data.astronaut()` (512x512) zoomed in on the face: resized to
  a square of `size = round(height * z)` pixels, z in [1.8, 2.6], placed so the face centre
  (astronaut pixel FACE_CENTRE) travels a loop around the canvas centre. With
  p = 2*pi*(i % frames)/frames:
      z     = 2.2 - 0.4 * cos(p)
      scale = size / 512
      cx    = width  * (0.5 + 0.2 * sin(p)),   cy = height * (0.5 + 0.15 * sin(2 * p))
      dx    = round(cx - FACE_CENTRE[0] * scale),  dy = round(cy - FACE_CENTRE[1] * scale)
  so astronaut pixel (x, y) appears at (x * scale + dx, y * scale + dy), within one pixel.
  The face is then 35-50 % of the frame height: BlazeFace short range (a 128x128 selfie-range
  model) finds it in every such frame of the default 640x480 clip.
"""

from __future__ import annotations

import math
import sys
from functools import cached_property
from pathlib import Path
from typing import Annotated, cast

import cv2
import numpy as np
import numpy.typing as npt
import typer

from evi.command import printed_settings, run, typer_app
from evi.errors import ConfigError
from evi.settings import ServiceSettings, die_on_config_error, load

ASTRONAUT_SIZE = 512
NO_FACE_EVERY = 10  # frame i shows no face when i % NO_FACE_EVERY == NO_FACE_EVERY - 1
SAMPLE_FPS = 15.0
FACE_CENTRE = (224, 126)  # centre of the astronaut's face, in astronaut pixels

Image = npt.NDArray[np.uint8]


def _astronaut_bgr() -> Image:
    from skimage import data  # imported lazily: only the sample needs scikit-image

    rgb = data.astronaut()  # type: ignore[no-untyped-call]
    return np.ascontiguousarray(rgb[:, :, ::-1])


class SampleClip:
    def __init__(self, width: int = 640, height: int = 480, frames: int = 120) -> None:
        if width < 64 or height < 64 or frames < 1:
            raise ValueError(f"sample clip {width}x{height}x{frames} is too small")
        if width < height:
            raise ValueError("sample clip must be at least as wide as it is tall")
        self.width = width
        self.height = height
        self.frames = frames

    @cached_property
    def _astronaut(self) -> Image:
        return _astronaut_bgr()

    @cached_property
    def _texture(self) -> Image:
        """Background, wider than the canvas by its width so it can drift and wrap."""
        h, w = self.height, self.width * 2
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        noise = np.random.default_rng(1234).integers(0, 12, size=(h, w), dtype=np.uint8)
        base = np.empty((h, w, 3), np.float32)
        # Smooth diagonal bands: texture for the encoder, nothing a face detector takes for a face.
        base[..., 0] = 90 + 50 * (xx / w)
        base[..., 1] = 70 + 100 * (yy / h)
        base[..., 2] = 120 + 40 * np.sin((xx + yy) / 97.0)
        return np.ascontiguousarray(np.clip(base + noise[..., None], 0, 255).astype(np.uint8))

    def has_face(self, i: int) -> bool:
        return (i % self.frames) % NO_FACE_EVERY != NO_FACE_EVERY - 1

    def placement(self, i: int) -> tuple[float, int, int] | None:
        """(scale, dx, dy) of the astronaut in frame i, or None when frame i has no face."""
        if not self.has_face(i):
            return None
        p = 2 * math.pi * (i % self.frames) / self.frames
        size = round(self.height * (2.2 - 0.4 * math.cos(p)))
        scale = size / ASTRONAUT_SIZE
        cx = self.width * (0.5 + 0.2 * math.sin(p))
        cy = self.height * (0.5 + 0.15 * math.sin(2 * p))
        return scale, round(cx - FACE_CENTRE[0] * scale), round(cy - FACE_CENTRE[1] * scale)

    def frame(self, i: int) -> Image:
        """Frame i as a new H x W x 3 BGR uint8 array."""
        shift = (2 * (i % self.frames)) % self.width
        out = self._texture[:, shift : shift + self.width].copy()
        place = self.placement(i)
        if place is not None:
            scale, dx, dy = place
            size = round(ASTRONAUT_SIZE * scale)
            face = cast(Image, cv2.resize(self._astronaut, (size, size),
                                          interpolation=cv2.INTER_AREA))
            _paste(out, face, dx, dy)
        return out


def _paste(canvas: Image, picture: Image, dx: int, dy: int) -> None:
    """Paste `picture` with its top-left at (dx, dy), clipped to the canvas (dx, dy may be < 0)."""
    h, w = canvas.shape[:2]
    ph, pw = picture.shape[:2]
    x0, y0, x1, y1 = max(dx, 0), max(dy, 0), min(dx + pw, w), min(dy + ph, h)
    if x0 < x1 and y0 < y1:
        canvas[y0:y1, x0:x1] = picture[y0 - dy : y1 - dy, x0 - dx : x1 - dx]


def write_clip(path: Path, clip: SampleClip, fps: float = SAMPLE_FPS) -> int:
    """Write the clip as an MJPG AVI; return the number of frames written."""
    fourcc = cv2.VideoWriter.fourcc(*"MJPG")
    writer = cv2.VideoWriter(str(path), fourcc, fps, (clip.width, clip.height))
    if not writer.isOpened():
        raise OSError(f"OpenCV cannot write {path}: use a .avi path in a writable folder")
    try:
        for i in range(clip.frames):
            writer.write(clip.frame(i))
    finally:
        writer.release()
    return clip.frames


cli = typer_app()


@cli.command(help="Write the generated sample clip as an MJPG AVI file.")
def sample(
    out: Annotated[Path, typer.Option(help="output file, e.g. clip.avi")],
    frames: Annotated[int, typer.Option()] = 120,
    width: Annotated[int, typer.Option()] = 640,
    height: Annotated[int, typer.Option()] = 480,
    fps: Annotated[float, typer.Option()] = SAMPLE_FPS,
) -> int:
    try:
        if printed_settings(load(ServiceSettings)):  # the clip needs none: the common ones
            return 0
    except ConfigError as e:
        die_on_config_error(e)
    try:
        clip = SampleClip(width, height, frames)
        n = write_clip(out, clip, fps)
    except (ValueError, OSError) as e:
        print(f"evi sample: {e}", file=sys.stderr)
        return 2
    print(f"wrote {n} frames {width}x{height} @ {fps:g} fps to {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(cli, argv, "evi sample")


if __name__ == "__main__":
    raise SystemExit(main())
