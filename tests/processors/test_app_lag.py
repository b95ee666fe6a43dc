"""Lag, seconds behind and liveness from the worker's own measurements (no broker)."""

from __future__ import annotations

from faust.types import TP

from processors.health import Health
from processors.lag import LagSnapshot, LagTracker

T = "evi.frames.face"


def tp(p: int) -> TP:
    return TP(T, p)


def test_lag_is_end_minus_committed_and_all_of_it_without_a_commit() -> None:
    lt = LagTracker("face-t1", T, "m")
    lt.on_assigned({tp(0): 40, tp(1): None, TP("other", 0): 5})
    snap = lt.update({tp(0): 100, tp(1): 30}, {})
    assert snap.lag == {0: 60, 1: 30}
    # This worker's own commits (faust's monitor) move it on.
    snap = lt.update({tp(0): 100, tp(1): 30}, {tp(0): 90, tp(1): 30})
    assert snap.lag == {0: 10, 1: 0}
    assert snap.committed_total == 120
    # A revoked partition is forgotten.
    lt.on_assigned({tp(1): 30})
    assert lt.update({tp(1): 31}, {}).lag == {1: 1}


def test_seconds_behind_is_the_age_of_the_oldest_unprocessed_frame() -> None:
    lt = LagTracker("face-t2", T, "m")
    lt.on_assigned({tp(0): 10, tp(1): 10})
    now = 1_000.0
    lt.processed(0, 19, ts_ms=990_000)  # done up to 19, captured 10 s ago
    lt.processed(1, 29, ts_ms=999_000)
    snap = lt.update({tp(0): 30, tp(1): 30}, {}, now=now)
    # p0: 20..29 unprocessed, newer than the frame captured 10 s ago; p1: caught up.
    assert snap.seconds_behind == 10.0
    assert lt.seconds_behind(now + 5) == 15.0  # still stuck: the frames keep aging
    lt.processed(0, 29, ts_ms=995_000)
    assert lt.seconds_behind(now + 6) == 0.0


def test_a_stream_that_resumes_after_a_pause_is_not_reported_behind_by_the_pause() -> None:
    lt = LagTracker("face-t3", T, "m")
    lt.on_assigned({tp(0): 10})
    lt.processed(0, 9, ts_ms=900_000)  # last frame long ago
    lt.update({tp(0): 10}, {}, now=1_000.0)  # caught up at t = 1000
    lt.update({tp(0): 11}, {}, now=1_000.5)  # one new frame, not processed yet
    assert lt.seconds_behind(1_000.5) == 0.5  # not the 100 s since the last frame


def test_nothing_processed_yet_counts_from_the_assignment() -> None:
    lt = LagTracker("face-t4", T, "m")
    lt.on_assigned({tp(0): None})
    assert lt.parts[0].assigned_at > 0
    snap = lt.update({tp(0): 5}, {}, now=lt.parts[0].assigned_at + 3)
    assert 2.9 < snap.seconds_behind < 3.1


def snap(lag: int, committed: int) -> LagSnapshot:
    return LagSnapshot({0: lag}, 0.0, 0.0, committed)


def test_liveness_fails_without_commit_progress_while_lagging() -> None:
    h = Health("face-t5", "g", stall_timeout_s=30, model="m")
    h.observe(snap(100, 10), 1, now=0.0)
    h.observe(snap(100, 20), 1, now=20.0)  # progress
    h.observe(snap(100, 20), 1, now=49.0)
    assert h.live()[0]
    h.observe(snap(100, 20), 1, now=51.0)
    ok, doc = h.live()
    assert not ok and doc["status"] == "stalled" and doc["stalled_seconds"] == 31.0
    h.observe(snap(0, 20), 1, now=52.0)  # no lag: nothing to make progress on
    assert h.live()[0]


def test_readiness_is_having_partitions() -> None:
    h = Health("face-t6", "g", stall_timeout_s=30, model="m")
    assert not h.ready()[0]
    h.observe(snap(0, 0), 3, now=1.0)
    ok, doc = h.ready()
    assert ok and doc["partitions"] == 3
