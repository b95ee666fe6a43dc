"""`sample:` — the generated clip from producers.sample, e.g. `sample:`, `sample:1280x720`,
`sample:640x480x300` (width x height x frames)."""

from __future__ import annotations

import re

from producers.sample import SAMPLE_FPS, SampleClip
from producers.sources.base import Frame, Source, SourceError

_SPEC = re.compile(r"^sample:(?:(\d+)x(\d+)(?:x(\d+))?)?$")


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
            self.clip = SampleClip(w or 640, h or 480, n or 120)
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
        if self._i >= self.clip.frames:
            return None
        frame = self.clip.frame(self._i)
        self._i += 1
        return frame

    def close(self) -> None:
        pass
