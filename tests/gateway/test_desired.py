"""The scaling panel's desired-replicas line: KEDA's formula (evi/scaleplan.py) on the gateway's
own lag reading of a kind's group."""

from __future__ import annotations

from gateway.monitor import desired_of

END = {p: 1000 for p in range(12)}


def test_desired_follows_lag_per_worker_and_is_capped_at_one_per_partition() -> None:
    caught_up = {p: 1000 for p in range(12)}
    assert desired_of(caught_up, {}, END, members=2, threshold=200) == 1  # min 1, not 0
    behind = {p: 1000 - 60 for p in range(12)}  # 720 frames of lag
    assert desired_of(behind, {}, END, members=1, threshold=200) == 4  # ceil(720 / 200)
    assert desired_of(behind, {}, END, members=4, threshold=200) == 4
    assert desired_of({}, {}, END, members=1, threshold=200) == 12  # nothing committed: all lag
    assert desired_of({}, {}, END, members=1, threshold=200, max_replicas=2) == 2  # the ceiling


def test_within_the_hpa_tolerance_the_current_count_stays() -> None:
    near = {p: 1000 - 35 for p in range(12)}  # 420 = 2 x 200 x 1.05
    assert desired_of(near, {}, END, members=2, threshold=200) == 2
    assert desired_of(near, {}, END, members=1, threshold=200) == 3


def test_an_invalid_committed_offset_counts_from_the_log_start() -> None:
    start = {p: 900 for p in range(12)}
    committed = {p: -1001 for p in range(12)}  # librdkafka's OFFSET_INVALID: no commit
    assert desired_of(committed, start, END, members=1, threshold=200) == 12  # KEDA: end, not
    # end - start (docs/scaling.md, "KEDA facts"): 12 x 1000 capped at 12 partitions
