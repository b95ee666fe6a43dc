"""`evi lag`: consumer lag per kind and the replicas KEDA's Kafka scaler would ask for.

The formula mirrors kedacore/keda `pkg/scalers/kafka_scaler.go` (the sarama `kafka` trigger; the
version with `ensureEvenDistributionOfPartitions`). Line numbers drift between KEDA releases, so
the functions are cited:
- `getLagForPartition` → `partition_lag`: no committed offset with `offsetResetPolicy: latest`
  counts 1 (0 with `scaleToZeroOnInvalidOffset`); with `earliest` it counts the partition's *end*
  offset (not end - start: KEDA assumes the log starts at 0, so after retention deleted records
  it over-counts; `evi.kafka.PartitionLag.lag` subtracts the start); otherwise end - committed,
  never clamped. `excludePersistentLag` counts 0 for a partition whose committed offset has not
  moved since the previous poll, but keeps it in the activation sum.
- `getTotalLag` → `total_lag`: sums; unless `allowIdleConsumers` (or with
  `limitToPartitionsWithLag` / `ensureEvenDistributionOfPartitions`), caps the metric to
  upperBound x lagThreshold when `totalLag / lagThreshold > upperBound` - an *integer* division,
  so a lag just under (partitions + 1) x lagThreshold passes uncapped and the HPA asks for one
  replica more than there are partitions (maxReplicaCount is the real cap).
  `getNextFactorThatBalancesConsumersToTopicPartitions` → `next_factor`.
- `GetMetricsAndActivity`: active when the uncapped, persistent-inclusive total > activation.
- `parseKafkaMetadata`: lagThreshold > 0, activation >= 0, flag conflicts (`ScalerConfig`).
The HPA KEDA creates then turns the metric (target type AverageValue) into replicas
(kubernetes `pkg/controller/podautoscaler/replica_calculator.go`,
`GetExternalPerPodMetricReplicas`): keep the current count while |1 - lag / (threshold x current)|
<= 0.1, else ceil(lag / threshold); clamped to [max(minReplicaCount, 1), maxReplicaCount]. KEDA
itself only moves 0 <-> 1: inactive with minReplicaCount 0 → 0 replicas (after cooldownPeriod).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Annotated, Any, Literal

import typer
from confluent_kafka import Consumer, KafkaException
from confluent_kafka.admin import AdminClient

from evi.command import parse, printed_settings, run, typer_app
from evi.errors import ConfigError
from evi.kafka import PartitionLag, admin, explain, group_reader, lag_of
from evi.settings import KafkaSettings, ServiceSettings, die_on_config_error, load
from evi.topics import Topics

OffsetResetPolicy = Literal["earliest", "latest"]


@dataclass(frozen=True)
class ScalerConfig:
    """A ScaledObject's kafka trigger and replica bounds; defaults are KEDA's own."""

    lag_threshold: int = 10
    activation_lag_threshold: int = 0
    offset_reset_policy: OffsetResetPolicy = "latest"
    allow_idle_consumers: bool = False
    limit_to_partitions_with_lag: bool = False
    ensure_even_distribution: bool = False
    exclude_persistent_lag: bool = False
    scale_to_zero_on_invalid_offset: bool = False
    min_replicas: int = 0
    max_replicas: int = 100
    hpa_tolerance: float = 0.1

    def __post_init__(self) -> None:
        problems = []
        if self.lag_threshold <= 0:
            problems.append("lag threshold must be a positive number")
        if self.activation_lag_threshold < 0:
            problems.append("activation lag threshold must be zero or more")
        if self.allow_idle_consumers and self.limit_to_partitions_with_lag:
            problems.append("allowIdleConsumers and limitToPartitionsWithLag exclude each other")
        if self.limit_to_partitions_with_lag and self.ensure_even_distribution:
            problems.append(
                "limitToPartitionsWithLag and ensureEvenDistributionOfPartitions exclude each other"
            )
        if not 0 <= self.min_replicas <= self.max_replicas:
            problems.append("want 0 <= min replicas <= max replicas")
        if problems:
            raise ConfigError("; ".join(problems))


@dataclass(frozen=True)
class LagTotals:
    metric: int  # what the scaler hands the HPA (after the partition cap)
    with_persistent: int  # what activation compares
    partitions: int
    partitions_with_lag: int


def partition_lag(
    p: PartitionLag, cfg: ScalerConfig, previous: dict[int, int] | None = None
) -> tuple[int, int]:
    """(lag, lag with persistent) of one partition; `previous` holds committed offsets between
    polls for excludePersistentLag and is updated in place."""
    if p.committed < 0:
        if cfg.offset_reset_policy == "latest":
            v = 0 if cfg.scale_to_zero_on_invalid_offset else 1
            return v, v
        if cfg.scale_to_zero_on_invalid_offset:
            return 0, 0
        return p.end, p.end
    lag = p.end - p.committed
    if cfg.exclude_persistent_lag and previous is not None:
        before = previous.get(p.partition)
        previous[p.partition] = p.committed
        if before == p.committed:
            return 0, lag
    return lag, lag


def _go_div(a: int, b: int) -> int:
    """Go's int64 division truncates toward zero (Python's // floors)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def next_factor(total: int, partitions: int, threshold: int) -> int:
    """Smallest divisor f of the partition count with f x threshold >= total."""
    for f in range(1, partitions + 1):
        if partitions % f == 0 and f * threshold >= total:
            return f
    return partitions


def total_lag(
    lags: Sequence[PartitionLag], cfg: ScalerConfig, previous: dict[int, int] | None = None
) -> LagTotals:
    total = persistent = with_lag = 0
    for p in lags:
        lag, lag_p = partition_lag(p, cfg, previous)
        total += lag
        persistent += lag_p
        with_lag += lag > 0
    n, even = len(lags), cfg.ensure_even_distribution
    if not cfg.allow_idle_consumers or cfg.limit_to_partitions_with_lag or even:
        upper = n
        if even:
            total = next_factor(total, n, cfg.lag_threshold) * cfg.lag_threshold
        if cfg.limit_to_partitions_with_lag:
            upper = with_lag
        if _go_div(total, cfg.lag_threshold) > upper:
            total = upper * cfg.lag_threshold
    return LagTotals(total, persistent, n, with_lag)


def is_active(t: LagTotals, cfg: ScalerConfig) -> bool:
    return t.with_persistent > cfg.activation_lag_threshold


def desired_replicas(t: LagTotals, cfg: ScalerConfig, current: int) -> int:
    """Replicas KEDA + its HPA settle on from this one reading (no stabilisation window). At
    zero replicas KEDA first wakes max(min, 1); this returns where the HPA then goes."""
    if not is_active(t, cfg) and cfg.min_replicas == 0:
        return 0
    now = max(current, 1)
    ratio = t.metric / (cfg.lag_threshold * now)
    want = math.ceil(t.metric / cfg.lag_threshold)
    if abs(1.0 - ratio) <= cfg.hpa_tolerance:
        want = now
    return min(max(want, cfg.min_replicas, 1), cfg.max_replicas)


@dataclass
class Stabilizer:
    """The HPA's stabilisation windows: up to the lowest recommendation of the last `up_s`,
    down to the highest of the last `down_s` (stabilizeRecommendationWithBehaviors)."""

    up_s: float = 0.0
    down_s: float = 300.0
    recs: list[tuple[float, int]] = field(default_factory=list)

    def __call__(self, now: float, desired: int, current: int) -> int:
        self.recs = [(t, d) for t, d in self.recs if t > now - max(self.up_s, self.down_s)]
        self.recs.append((now, desired))
        up = min(d for t, d in self.recs if t > now - self.up_s or t == now)
        down = max(d for t, d in self.recs if t > now - self.down_s or t == now)
        return up if current < up else down if current > down else current


@dataclass(frozen=True)
class Plan:
    kind: str
    group: str
    topic: str
    lag: int  # Kafka's own lag (end - committed; end - start if uncommitted)
    metric: int
    active: bool
    members: int
    state: str
    desired: int
    partitions: list[dict[str, int]]
    assigned: list[list[int]]  # partitions of each member


def describe_group(
    kafka: KafkaSettings, group: str, timeout: float = 10.0, client: AdminClient | None = None
) -> tuple[str, list[list[int]]]:
    """(state, partitions of each member) as AdminClient.describe_consumer_groups sees them."""
    client = client or admin(kafka)  # kept alive until the future settles: its handle serves it
    fut = client.describe_consumer_groups([group], request_timeout=timeout)[group]
    d = fut.result(timeout + 1)
    owned = [sorted(tp.partition for tp in m.assignment.topic_partitions) for m in d.members]
    return str(d.state.name).lower(), owned


class LagReader:
    """The two clients one kind's readings need, kept for the reader's whole life as KEDA keeps
    its own: a consumer for the group's committed offsets and the end offsets, an admin client for
    the group's members. (A new client per poll costs a connection, a metadata round trip and a
    librdkafka log line each, every few seconds.)"""

    def __init__(self, kafka: KafkaSettings, group: str) -> None:
        self.group = group
        self.consumer: Consumer = group_reader(kafka, group)
        self.admin = AdminClient(kafka.client_config())

    def lags(self, topic: str, timeout: float = 10.0) -> list[PartitionLag]:
        self.admin.poll(0)  # long-lived clients deliver their queued log lines when polled
        self.consumer.poll(0)  # (no subscription, no assignment: it returns nothing else)
        return lag_of(self.consumer, topic, timeout)

    def close(self) -> None:
        self.consumer.close()


def read_plan(
    kafka: KafkaSettings, topics: Topics, kind: str, cfg: ScalerConfig,
    previous: dict[int, int] | None = None, current: int | None = None,
    reader: LagReader | None = None,
) -> Plan:
    """One reading from the broker; `current` replicas default to the group's members. Without
    a `reader`, one is made for this reading and closed after it."""
    group, topic = topics.group(kind), topics.frames(kind)
    own = reader is None
    r = LagReader(kafka, group) if reader is None else reader
    try:
        lags = r.lags(topic)
        state, owned = describe_group(kafka, group, client=r.admin)
    finally:
        if own:
            r.close()
    totals = total_lag(lags, cfg, previous)
    now = len(owned) if current is None else current
    rows = [asdict(p) | {"lag": p.lag} for p in lags]
    return Plan(
        kind, group, topic, sum(p.lag for p in lags), totals.metric, is_active(totals, cfg),
        len(owned), state, desired_replicas(totals, cfg, now), rows, owned,
    )


def _table(plans: list[Plan]) -> str:
    head = ("kind", "group", "parts", "lag", "metric", "active", "members", "state", "desired")
    rows = [head] + [
        (p.kind, p.group, str(len(p.partitions)), str(p.lag), str(p.metric),
         "yes" if p.active else "no", str(p.members), p.state, str(p.desired))
        for p in plans
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in rows)


cli = typer_app()
Switch = Annotated[bool, typer.Option()]


@cli.command(help=(__doc__ or "").split("\n")[0])
def lag(
    kinds: Annotated[list[str] | None, typer.Option(
        "--kind", help="kind (repeatable; default face)")] = None,
    # Defaults follow deploy/k8s/keda/scaledobject-processor-face.yaml, not KEDA's own.
    lag_threshold: Annotated[int, typer.Option(help="default 700")] = 700,
    activation_lag_threshold: Annotated[int, typer.Option(help="default 0")] = 0,
    offset_reset_policy: Annotated[OffsetResetPolicy, typer.Option(
        help="default earliest")] = "earliest",
    allow_idle_consumers: Annotated[bool, typer.Option("--allow-idle-consumers")] = False,
    limit_to_partitions_with_lag: Annotated[bool, typer.Option(
        "--limit-to-partitions-with-lag")] = False,
    exclude_persistent_lag: Annotated[bool, typer.Option("--exclude-persistent-lag")] = False,
    ensure_even_distribution: Annotated[bool, typer.Option(
        "--ensure-even-distribution")] = False,
    scale_to_zero_on_invalid_offset: Annotated[bool, typer.Option(
        "--scale-to-zero-on-invalid-offset")] = False,
    min_replicas: Annotated[int, typer.Option(help="default 1")] = 1,
    max_replicas: Annotated[int, typer.Option(help="default 12")] = 12,
    as_json: Annotated[bool, typer.Option(
        "--json", help="one JSON object per kind and reading")] = False,
    watch: Annotated[int, typer.Option(metavar="N", help="N readings (max 10000)")] = 1,
    interval: Annotated[float, typer.Option(help="seconds between readings (default 5)")] = 5.0,
) -> int:
    a = argparse.Namespace(**locals())
    a.json = a.as_json
    return report(a)


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The flags' values without running (tests compare the defaults with KEDA's manifest)."""
    return parse(cli, argv, "evi lag")


def main(argv: list[str] | None = None) -> int:
    return run(cli, argv, "evi lag")


def config_from(a: argparse.Namespace) -> ScalerConfig:
    """The flags of the same names (argparse dests match the ScalerConfig fields)."""
    names = set(ScalerConfig.__dataclass_fields__) - {"hpa_tolerance"}
    return ScalerConfig(**{n: getattr(a, n) for n in names})


def report(a: argparse.Namespace) -> int:
    try:
        if not 1 <= a.watch <= 10_000 or not 0.1 <= a.interval <= 3600:
            raise ConfigError("want 1 <= --watch <= 10000 and 0.1 <= --interval <= 3600")
        cfg = config_from(a)
        s = load(ServiceSettings)
        topics = Topics(s.topics)
        kinds = a.kinds or ["face"]
        for k in kinds:
            topics.frames(k)  # checks the kind's spelling
    except ConfigError as e:
        die_on_config_error(e)
    if printed_settings(s):
        return 0
    previous: dict[str, dict[int, int]] = {k: {} for k in kinds}
    readers = {k: LagReader(s.kafka, topics.group(k)) for k in kinds}  # one pair for all readings
    for i in range(a.watch):
        if i:
            time.sleep(a.interval)
        try:
            plans = [read_plan(s.kafka, topics, k, cfg, previous[k], reader=readers[k])
                     for k in kinds]
        except KeyError as e:  # partitions_of: the frames topic does not exist
            print(f"evi lag: {e.args[0]}", file=sys.stderr)
            return 1
        except KafkaException as e:
            print(f"evi lag: {explain(s.kafka, e, 10)}", file=sys.stderr)  # group_lag's timeout
            return 1
        if a.json:
            for p in plans:
                doc: dict[str, Any] = {"ts_ms": int(time.time() * 1000)} | asdict(p)
                print(json.dumps(doc, separators=(",", ":")), flush=True)
        else:
            print(("\n" if i else "") + _table(plans), flush=True)
    return 0
