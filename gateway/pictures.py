"""Which frames go to viewers alone, so a tile always shows its stream's newest picture.

A result carries the frame it was computed on while the gateway still holds that frame. When
results lag behind the frames (a processor that cannot keep up, drop-stale skipping, or none
running), the newest picture a viewer got would be old, or there would be none at all. So a
frame goes alone when the newest frame sent with a result is more than `behind_ms` older
(capture time) than it, at most `fps` a second per stream: the tile's need, not the stream's
rate. Each viewer's queue holds at most one such frame per stream, the newest
(gateway/subscribers.py), so pictures never crowd out results.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(slots=True)
class Pictures:
    """Per stream: what viewers were last sent of it."""

    paired_ts: int | None = None  # capture time of the newest frame sent with its result
    alone_at: float = -math.inf  # monotonic time the last frame went alone
    alone: int = 0  # frames sent alone


class AloneFrames:
    """Decides, per fresh frame, whether it goes to viewers alone."""

    def __init__(self, behind_ms: int, fps: float) -> None:
        self.behind_ms = behind_ms  # 0 = never
        self.interval = 1 / fps

    def paired(self, p: Pictures, ts_ms: int) -> None:
        """A result went out with its frame (captured at ts_ms)."""
        if p.paired_ts is None or ts_ms > p.paired_ts:
            p.paired_ts = ts_ms

    def due(self, p: Pictures, ts_ms: int, now: float) -> bool:
        """True (and counted) when the frame captured at ts_ms goes alone now. A capture time
        far before the paired one (a clock set back) also counts as behind, never as ahead."""
        if not self.behind_ms:
            return False
        if p.paired_ts is not None and abs(ts_ms - p.paired_ts) <= self.behind_ms:
            return False  # results keep up: their frames are the picture
        if now - p.alone_at < self.interval:
            return False
        p.alone_at = now
        p.alone += 1
        return True
