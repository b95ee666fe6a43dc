"""Resize and JPEG-encode BGR frames.

Three encoders, all libjpeg-turbo underneath, all q80 4:2:0 with the accurate DCT: cv2.imencode
(OpenCV's bundled libjpeg-turbo; one extra copy of the JPEG into `bytes`), simplejpeg (its bundled
libjpeg-turbo, returns `bytes` directly) and PyTurboJPEG (ctypes over the system libturbojpeg;
optional: `pip install 'PyTurboJPEG<2'` + `apt-get install libturbojpeg0`; PyTurboJPEG 2.x needs
libjpeg-turbo 3, which Debian 12 does not ship). bench/producer.py on the 2-core dev VM: a tie,
within 5 % and in a different order from run to run (640x480 ~1.0 ms, 1280x720 ~3.0 ms CPU), the
same sizes, all three release the GIL; docs/benchmarks.md "## Producer". simplejpeg is the
default (PublisherSettings.encoder): as fast, no extra copy, a plain pip dependency, and the
processors decode with it. `EVI_PUBLISHER__ENCODER=cv2|turbojpeg` picks another.
"""

from __future__ import annotations

from functools import cache
from typing import Any, Literal, cast

import cv2
import numpy as np
import simplejpeg

from producers.sources.base import Frame

Backend = Literal["cv2", "simplejpeg", "turbojpeg"]
BACKENDS: tuple[Backend, ...] = ("cv2", "simplejpeg", "turbojpeg")


@cache
def _turbojpeg() -> Any:
    """The PyTurboJPEG encoder (loads the system libturbojpeg once); raises when unavailable."""
    from turbojpeg import TurboJPEG

    return TurboJPEG()


def unavailable(backend: str) -> str:
    """Why `backend` cannot encode here, with the fix; empty when it can."""
    if backend != "turbojpeg":
        return ""
    try:
        _turbojpeg()
    except ImportError:
        return ("encoder turbojpeg needs PyTurboJPEG: pip install 'PyTurboJPEG<2' (or use "
                "encoder simplejpeg)")
    except (OSError, RuntimeError) as e:  # no libturbojpeg, or the wrong major version
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return (f"encoder turbojpeg cannot load libturbojpeg ({first}): apt-get install "
                "libturbojpeg0 and pip install 'PyTurboJPEG<2' (or use encoder simplejpeg)")
    return ""


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
        backend: Backend = "simplejpeg",
    ) -> None:
        if not 1 <= quality <= 100:
            raise ValueError(f"JPEG quality {quality} is not in 1..100")
        if backend not in BACKENDS:
            raise ValueError(f"unknown JPEG encoder {backend!r}: use one of {BACKENDS}")
        problem = unavailable(backend)
        if problem:
            raise ValueError(problem)
        self.quality = quality
        self.width = width
        self.height = height
        self.backend = backend
        self._params = [cv2.IMWRITE_JPEG_QUALITY, quality]
        self._turbo: dict[str, Any] = {}
        if backend == "turbojpeg":
            from turbojpeg import TJPF_BGR, TJSAMP_420

            self._turbo = {"quality": quality, "pixel_format": TJPF_BGR,
                           "jpeg_subsample": TJSAMP_420}

    def resize(self, frame: Frame) -> Frame:
        h, w = frame.shape[:2]
        tw, th = target_size(w, h, self.width, self.height)
        if (tw, th) == (w, h):
            return frame
        interp = cv2.INTER_AREA if tw < w else cv2.INTER_LINEAR
        return cast(Frame, cv2.resize(frame, (tw, th), interpolation=interp))

    def encode(self, frame: Frame) -> bytes:
        """JPEG bytes (4:2:0) of a BGR frame (already resized)."""
        if self.backend == "cv2":
            ok, buf = cv2.imencode(".jpg", frame, self._params)
            if not ok:
                raise ValueError(f"OpenCV could not encode a {frame.shape} frame as JPEG")
            return buf.tobytes()
        if not frame.flags.c_contiguous:
            frame = np.ascontiguousarray(frame)
        if self.backend == "simplejpeg":
            return simplejpeg.encode_jpeg(  # type: ignore[no-any-return]
                frame, quality=self.quality, colorspace="BGR", colorsubsampling="420"
            )
        return cast(bytes, _turbojpeg().encode(frame, **self._turbo))
