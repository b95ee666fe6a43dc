"""The worked retention table in docs/replay.md follows its own formula."""

from __future__ import annotations

import math
import re

from evi.settings import REPO_ROOT, TopicSettings

OVERHEAD = 250  # bytes per record on disk, as the formula says
DAY = 86_400


def test_reach_table_matches_the_formula() -> None:
    text = (REPO_ROOT / "docs" / "replay.md").read_text()
    block = text.split("<!-- reach-table:", 1)[1].split("<!-- /reach-table -->", 1)[0]
    rows = [ln for ln in block.splitlines() if re.match(r"^\| \d", ln)]
    assert len(rows) >= 5
    defaults = TopicSettings()
    for row in rows:
        nums = [float(x) for x in re.findall(r"\d+(?:\.\d+)?", row)]
        cameras, fps, jpeg_kb, k, mb_s, reach_min, bytes_gib, disk_tb = nums
        assert k == math.ceil(cameras / defaults.frame_partitions), row
        per_record = jpeg_kb * 1000 + OVERHEAD
        rate = k * fps * per_record  # bytes/s into the busiest partition
        assert round(rate / 1e6, 2) == mb_s, row
        reach_s = min(defaults.frames_retention_ms / 1000, defaults.frames_retention_bytes / rate)
        assert round(reach_s / 60, 1) == reach_min, row
        assert round(rate * DAY / (1 << 30), 1) == bytes_gib, row
        assert round(cameras * fps * per_record * DAY / 1e12, 2) == disk_tb, row
