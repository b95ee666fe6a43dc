"""drop-stale stays fair across streams: a batch over its age budget keeps each stream's newest
frame instead of dropping whole streams, and a backlog still drains."""

from __future__ import annotations

from processors.fairness import Candidate, StalePolicy

NOW = 1_000_000


def frames(stream: str, ages_ms: list[int]) -> list[Candidate]:
    return [Candidate(stream, NOW - age) for age in ages_ms]


def kept(batch: list[Candidate], keep: list[bool]) -> list[tuple[str, int]]:
    return [(c.stream, NOW - c.ts_ms) for c, k in zip(batch, keep, strict=True) if k]


def test_fresh_frames_are_all_kept() -> None:
    batch = frames("a", [300, 200, 100]) + frames("b", [50])
    assert StalePolicy(max_age_ms=1000, keep_ms=1000).plan(batch, NOW) == [True] * 4


def test_over_budget_keeps_the_newest_frame_of_each_stream() -> None:
    # a and b are all stale (a burst came in late), c is fresh: dropping every stale frame would
    # leave a and b without any result; instead each keeps its newest one.
    batch = (frames("a", [5000, 4900, 4800, 4700]) + frames("b", [3000, 2900])
             + frames("c", [400, 300]))  # fmt: skip
    keep = StalePolicy(max_age_ms=1000, keep_ms=1000).plan(batch, NOW)
    assert kept(batch, keep) == [("a", 4700), ("b", 2900), ("c", 400), ("c", 300)]


def test_a_stream_with_fresh_frames_drops_its_stale_ones() -> None:
    batch = frames("a", [1500, 1400, 200])
    keep = StalePolicy(max_age_ms=1000, keep_ms=1000).plan(batch, NOW)
    assert kept(batch, keep) == [("a", 200)]


def test_order_within_the_batch_does_not_matter() -> None:
    batch = [Candidate("a", NOW - 4700), Candidate("a", NOW - 5000)]  # newest first
    assert StalePolicy(max_age_ms=1000, keep_ms=0).plan(batch, NOW) == [True, False]


def test_a_backlog_drains_and_no_stream_starves() -> None:
    """8 streams at 25 fps, 60 s behind, batches of 16 frames: at most one stale frame per
    stream per second of its capture time is kept, and every stream gets those."""
    policy = StalePolicy(max_age_ms=2000, keep_ms=1000)
    streams = [f"s{i}" for i in range(8)]
    # 60 s of frames, the newest captured 5 s ago: all stale.
    backlog = [Candidate(s, NOW - 65_000 + i * 40) for i in range(1500) for s in streams]
    per_stream = {s: 0 for s in streams}
    total_kept = 0
    for start in range(0, len(backlog), 16):
        batch = backlog[start:start + 16]
        for c, k in zip(batch, policy.plan(batch, NOW), strict=True):
            if k:
                per_stream[c.stream] += 1
                total_kept += 1
    # 60 s of capture time → about 60 kept per stream (first one included), 8 x 1500 in total.
    assert all(58 <= n <= 62 for n in per_stream.values()), per_stream
    assert total_kept < len(backlog) // 20


def test_a_stream_clock_going_back_is_not_starved() -> None:
    policy = StalePolicy(max_age_ms=1000, keep_ms=10_000)
    assert policy.plan(frames("a", [5000]), NOW) == [True]
    assert policy.plan(frames("a", [9000]), NOW) == [True]  # capture clock reset (older ts)
