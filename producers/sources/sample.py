"""`sample:` — the generated clip from producers.sample, e.g. `sample:`, `sample:1280x720`,
`sample:640x480x300` (width x height x frames)."""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from functools import cache

from producers.sample import SAMPLE_FPS, SampleClip
from producers.sources.base import Frame, Source, SourceError

_SPEC = re.compile(r"^sample:(?:(\d+)x(\d+)(?:x(\d+))?)?$")
KEPT_FRAMES = 16  # per geometry: sources started together read within a few frames of each other


class SharedFrames:
    """The frames of one clip geometry, rendered once for every sample source of the process.

    The N streams of `evi produce --samples N` show the same clip, and rendering a frame (a
    ~1000 px resize of the astronaut) costs as much as encoding it: without sharing, 12 streams
    at 15 fps spent ~0.15 of a core drawing the same pictures 12 times. Frames are read-only,
    so no stream can change another's; each stream still encodes its own (as a camera would).
    """

    def __init__(self, clip: SampleClip) -> None:
        self.clip = clip
        self._lock = threading.Lock()
        self._recent: OrderedDict[int, Frame] = OrderedDict()

    def frame(self, i: int) -> Frame:
        with self._lock:
            if (kept := self._recent.get(i)) is not None:
                return kept
        frame = self.clip.frame(i)  # outside the lock: two streams may render one frame twice
        frame.flags.writeable = False
        with self._lock:
            self._recent[i] = frame
            while len(self._recent) > KEPT_FRAMES:
                self._recent.popitem(last=False)
        return frame


@cache
def shared_frames(width: int, height: int, frames: int) -> SharedFrames:
    return SharedFrames(SampleClip(width, height, frames))


class SampleSource(Source):
    def __init__(self, spec: str) -> None:
        super().__init__(spec)
        m = _SPEC.match(spec)
        if not m:
            raise SourceError(
                f"sample source {spec!r} is not valid: use sample: or sample:WxH[xFRAMES]",
                permanent=True,
            )
        w, h, n = (int(g) if g else None for g in m.groups())
        try:
            self.frames = shared_frames(w or 640, h or 480, n or 120)
        except ValueError as e:
            raise SourceError(f"sample source {spec!r}: {e}", permanent=True) from None
        self._i = 0

    @property
    def name(self) -> str:
        return "sample"

    @property
    def native_fps(self) -> float:
        return SAMPLE_FPS

    def open(self) -> None:
        self._i = 0

    def read(self) -> Frame | None:
        if self._i >= self.frames.clip.frames:
            return None
        frame = self.frames.frame(self._i)
        self._i += 1
        return frame

    def close(self) -> None:
        pass
