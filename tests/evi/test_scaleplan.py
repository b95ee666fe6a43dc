"""KEDA's Kafka scaler formula (evi.scaleplan), case by case from kafka_scaler.go; no broker."""

from __future__ import annotations

import pytest

from evi.errors import ConfigError
from evi.kafka import PartitionLag
from evi.scaleplan import (
    LagTotals,
    ScalerConfig,
    Stabilizer,
    desired_replicas,
    is_active,
    main,
    next_factor,
    partition_lag,
    total_lag,
)

NONE = -1  # no committed offset (KEDA's invalidOffset)


def parts(*committed_end: tuple[int, int], start: int = 0) -> list[PartitionLag]:
    return [PartitionLag(i, c, e, start) for i, (c, e) in enumerate(committed_end)]


@pytest.mark.parametrize(
    ("p", "cfg", "want"),
    [
        # committed: end - committed, unclamped (committed past end after a topic re-creation)
        (PartitionLag(0, 40, 100, 0), ScalerConfig(), (60, 60)),
        (PartitionLag(0, 100, 100, 0), ScalerConfig(), (0, 0)),
        (PartitionLag(0, 120, 100, 0), ScalerConfig(), (-20, -20)),
        # no commit, latest: 1 so a new group wakes, 0 with scaleToZeroOnInvalidOffset
        (PartitionLag(0, NONE, 100, 0), ScalerConfig(), (1, 1)),
        (PartitionLag(0, NONE, 0, 0), ScalerConfig(), (1, 1)),
        (PartitionLag(0, NONE, 100, 0),
         ScalerConfig(scale_to_zero_on_invalid_offset=True), (0, 0)),
        # no commit, earliest: the END offset, even when retention moved the start (not end-start)
        (PartitionLag(0, NONE, 100, 0), ScalerConfig(offset_reset_policy="earliest"), (100, 100)),
        (PartitionLag(0, NONE, 100, 70), ScalerConfig(offset_reset_policy="earliest"), (100, 100)),
        (PartitionLag(0, NONE, 100, 70),
         ScalerConfig(offset_reset_policy="earliest", scale_to_zero_on_invalid_offset=True),
         (0, 0)),
    ],
)
def test_partition_lag(p: PartitionLag, cfg: ScalerConfig, want: tuple[int, int]) -> None:
    assert partition_lag(p, cfg) == want


def test_kafka_lag_differs_from_keda_for_uncommitted_partitions_after_retention() -> None:
    p = PartitionLag(0, NONE, 100, 70)
    assert p.lag == 30  # what `kafka-consumer-groups` / evi's own lag shows
    assert partition_lag(p, ScalerConfig(offset_reset_policy="earliest"))[0] == 100


def test_exclude_persistent_lag_needs_a_moving_offset() -> None:
    cfg = ScalerConfig(exclude_persistent_lag=True)
    prev: dict[int, int] = {}
    assert partition_lag(PartitionLag(0, 10, 50, 0), cfg, prev) == (40, 40)  # first sight counts
    assert partition_lag(PartitionLag(0, 10, 60, 0), cfg, prev) == (0, 50)  # stuck: excluded
    assert partition_lag(PartitionLag(0, 15, 60, 0), cfg, prev) == (45, 45)  # moved: counts
    assert prev == {0: 15}
    # uncommitted partitions never reach the persistence check
    assert partition_lag(PartitionLag(1, NONE, 60, 0), cfg, prev) == (1, 1)
    assert partition_lag(PartitionLag(1, NONE, 60, 0), cfg, prev) == (1, 1)
    assert 1 not in prev


def test_persistent_lag_is_excluded_from_scaling_but_not_from_activation() -> None:
    cfg = ScalerConfig(exclude_persistent_lag=True)
    prev: dict[int, int] = {}
    lags = parts((10, 50), (20, 20))
    total_lag(lags, cfg, prev)
    t = total_lag(lags, cfg, prev)
    assert (t.metric, t.with_persistent, t.partitions_with_lag) == (0, 40, 0)
    assert is_active(t, cfg)


@pytest.mark.parametrize(
    ("lags", "cfg", "want"),
    [
        # 4 partitions, threshold 10: 100 / 10 = 10 > 4 -> capped to 4 x 10
        (parts((0, 25), (0, 25), (0, 25), (0, 25)), ScalerConfig(), LagTotals(40, 100, 4, 4)),
        # integer division: 49 / 10 = 4, not > 4 -> 49 passes (the HPA then asks for 5)
        (parts((0, 49), (0, 0), (0, 0), (0, 0)), ScalerConfig(), LagTotals(49, 49, 4, 1)),
        (parts((0, 50), (0, 0), (0, 0), (0, 0)), ScalerConfig(), LagTotals(40, 50, 4, 1)),
        # allowIdleConsumers: no cap
        (parts((0, 25), (0, 25), (0, 25), (0, 25)), ScalerConfig(allow_idle_consumers=True),
         LagTotals(100, 100, 4, 4)),
        # limitToPartitionsWithLag: cap at the partitions with lag > 0
        (parts((0, 50), (5, 5), (9, 9), (0, 0)),
         ScalerConfig(limit_to_partitions_with_lag=True), LagTotals(10, 50, 4, 1)),
        (parts((0, 0), (5, 5)), ScalerConfig(limit_to_partitions_with_lag=True),
         LagTotals(0, 0, 2, 0)),
        # ensureEvenDistribution: rounded up to a divisor of 12 partitions x threshold
        (parts(*[(0, 3)] * 11, (0, 2)), ScalerConfig(ensure_even_distribution=True),
         LagTotals(40, 35, 12, 12)),
        (parts(*[(0, 0)] * 12), ScalerConfig(ensure_even_distribution=True),
         LagTotals(10, 0, 12, 0)),
        (parts(*[(0, 100)] * 12), ScalerConfig(ensure_even_distribution=True),
         LagTotals(120, 1200, 12, 12)),
        # empty group on a new topic, default latest: 1 per partition
        (parts((NONE, 0), (NONE, 0), (NONE, 7)), ScalerConfig(), LagTotals(3, 3, 3, 3)),
        # negative lags sum as they are
        (parts((120, 100), (0, 5)), ScalerConfig(), LagTotals(-15, -15, 2, 1)),
    ],
)
def test_total_lag(lags: list[PartitionLag], cfg: ScalerConfig, want: LagTotals) -> None:
    assert total_lag(lags, cfg) == want


@pytest.mark.parametrize(
    ("total", "n", "threshold", "want"),
    [(0, 12, 10, 1), (10, 12, 10, 1), (11, 12, 10, 2), (35, 12, 10, 4), (61, 12, 10, 12),
     (500, 12, 10, 12), (7, 7, 1, 7), (3, 7, 1, 7)],
)
def test_next_factor(total: int, n: int, threshold: int, want: int) -> None:
    assert next_factor(total, n, threshold) == want


def totals(metric: int, with_persistent: int | None = None) -> LagTotals:
    return LagTotals(metric, metric if with_persistent is None else with_persistent, 12, 12)


@pytest.mark.parametrize(
    ("t", "cfg", "current", "want"),
    [
        (totals(0), ScalerConfig(), 3, 0),  # inactive, minReplicaCount 0: KEDA scales to zero
        (totals(0), ScalerConfig(min_replicas=1), 3, 1),
        (totals(5), ScalerConfig(activation_lag_threshold=5), 1, 0),  # 5 is not > 5
        (totals(5), ScalerConfig(activation_lag_threshold=5, min_replicas=2), 1, 2),
        (totals(6), ScalerConfig(activation_lag_threshold=5), 0, 1),
        (totals(45), ScalerConfig(), 1, 5),  # ceil(45 / 10)
        (totals(49), ScalerConfig(max_replicas=4), 1, 4),  # maxReplicaCount is the hard cap
        (totals(105), ScalerConfig(), 10, 10),  # within the HPA's 10 % tolerance: no change
        (totals(111), ScalerConfig(), 10, 12),
        (totals(89), ScalerConfig(), 10, 9),
        (totals(105), ScalerConfig(hpa_tolerance=0.0), 10, 11),
        (totals(30), ScalerConfig(), 0, 3),  # from zero: where the HPA goes after KEDA's 0 -> 1
        (totals(-15), ScalerConfig(activation_lag_threshold=0, min_replicas=1), 2, 1),
        (totals(0, 3), ScalerConfig(), 2, 1),  # active through excluded (persistent) lag only
    ],
)
def test_desired_replicas(t: LagTotals, cfg: ScalerConfig, current: int, want: int) -> None:
    assert desired_replicas(t, cfg, current) == want


def test_stabilizer_follows_the_hpa_windows() -> None:
    s = Stabilizer(up_s=0.0, down_s=30.0)
    assert s(0.0, 4, 1) == 4  # up at once
    assert s(10.0, 1, 4) == 4  # down held: 4 was wanted 10 s ago
    assert s(31.0, 2, 4) == 2  # 4 has left the window: highest since is 2
    assert s(45.0, 1, 2) == 2
    assert s(62.0, 1, 2) == 1
    up = Stabilizer(up_s=20.0, down_s=0.0)
    assert up(0.0, 1, 1) == 1
    assert up(5.0, 3, 1) == 1  # up only to the lowest of the last 20 s
    assert up(26.0, 3, 1) == 3


@pytest.mark.parametrize(
    "kwargs",
    [
        {"lag_threshold": 0},
        {"activation_lag_threshold": -1},
        {"allow_idle_consumers": True, "limit_to_partitions_with_lag": True},
        {"limit_to_partitions_with_lag": True, "ensure_even_distribution": True},
        {"min_replicas": 3, "max_replicas": 2},
    ],
)
def test_bad_configs_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        ScalerConfig(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "argv", [["--lag-threshold", "0"], ["--watch", "0"], ["--kind", "Bad Kind"]]
)
def test_cli_rejects_bad_flags_before_touching_kafka(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    assert capsys.readouterr().err.startswith("evi: bad config:")
