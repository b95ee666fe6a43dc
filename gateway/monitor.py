"""Kafka as the operator sees it: is the broker answering (drives /readyz), and per kind the
processors' consumer groups — lag, active workers (group members) — with a short history.

Every Kafka call runs on a worker thread with a timeout; the event loop only reads snapshots.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._listoffsets import OffsetSpec
from prometheus_client import Gauge

from evi.kafka import PartitionLag
from evi.scaleplan import ScalerConfig, desired_replicas, total_lag
from evi.topics import Topics
from gateway.feed import kinds_in
from gateway.schemas import GroupView, KindSample, KindView, Member
from gateway.settings import GatewaySettings

log = logging.getLogger("evi.gateway.monitor")

KAFKA_UP = Gauge("evi_gateway_kafka_up", "1 when the gateway's last Kafka probe was answered")
KIND_LAG = Gauge("evi_gateway_kind_lag", "Frames not yet processed, per kind", ["kind"])
KIND_WORKERS = Gauge("evi_gateway_kind_workers", "Members of a kind's consumer groups", ["kind"])
# Per consumer group: a kind's default model and each other model (FP32 beside INT8) apart.
GROUP_LAG = Gauge("evi_gateway_group_lag", "Frames a consumer group has not processed",
                  ["kind", "group"])
GROUP_WORKERS = Gauge("evi_gateway_group_workers", "Members of a consumer group", ["kind", "group"])

TIMEOUT = 5.0
EARLIEST: OffsetSpec = OffsetSpec.earliest()  # type: ignore[no-untyped-call]
LATEST: OffsetSpec = OffsetSpec.latest()  # type: ignore[no-untyped-call]


@dataclass(frozen=True, slots=True)
class Lag:
    """One sample of a kind's consumer groups."""

    partitions: int
    groups: list[GroupView]
    lag: int
    workers: int
    desired: int | None = None  # KEDA's replicas for the kind's own group (None: no group yet)


@dataclass(slots=True)
class KindState:
    """A kind as last sampled, with its history for the charts."""

    history: deque[KindSample]
    lag: Lag | None = None  # the last good sample (kept while Kafka is away: stale)
    fps_in: float = 0.0
    fps_out: float = 0.0
    sampled_ms: int = 0
    stale: bool = True


def groups_of(kind: str, kinds: Sequence[str], group_ids: list[str], topics: Topics) -> list[str]:
    """The consumer groups of a kind: `<prefix>-processor-<kind>` and its per-model
    `…-<model>` groups, but not those of a longer kind sharing the name (`face` vs `face-hd`)."""
    base = topics.group(kind)
    longer = [topics.group(k) for k in kinds if k != kind and k.startswith(kind + "-")]
    out = []
    for g in group_ids:
        if (g == base or g.startswith(base + "-")) and not any(
            g == lb or g.startswith(lb + "-") for lb in longer
        ):
            out.append(g)
    return sorted(out)


def lag_of(committed: dict[int, int], start: dict[int, int], end: dict[int, int]) -> dict[int, int]:
    """Per-partition lag: end - committed; with no commit, what an `earliest` reset would see."""
    out = {}
    for p, e in end.items():
        c = committed.get(p, -1)
        base = c if c >= 0 else start.get(p, 0)
        out[p] = max(0, e - base)
    return out


def desired_of(committed: dict[int, int], start: dict[int, int], end: dict[int, int],
               members: int, threshold: int, max_replicas: int = 1024) -> int:
    """The replicas KEDA's Kafka scaler + HPA would ask for from this reading (evi/scaleplan.py;
    offsetResetPolicy earliest, 1 to max_replicas, no stabilisation window)."""
    lags = [PartitionLag(p, max(committed.get(p, -1), -1), e, start.get(p, 0))
            for p, e in sorted(end.items())]  # fmt: skip
    cfg = ScalerConfig(lag_threshold=threshold, offset_reset_policy="earliest", min_replicas=1,
                       max_replicas=max_replicas)
    return desired_replicas(total_lag(lags, cfg), cfg, members)


class Monitor:
    def __init__(
        self,
        s: GatewaySettings,
        counters: Callable[[], tuple[dict[str, int], dict[str, dict[str, int]]]],
        on_status: Callable[[bool], None],
    ) -> None:
        self.s = s
        self.topics = Topics(s.topics)
        self.kinds: list[str] = list(s.kinds)
        self.counters = counters
        self.on_status = on_status
        self.kafka_ok = False
        self.error = "not checked yet"
        self.checked_ms = 0
        self.partitions: dict[str, int] = {}
        self.states: dict[str, KindState] = {}
        self._admin: AdminClient | None = None
        self._last_counts: (
            tuple[float, dict[str, int], dict[str, dict[str, int]]] | None
        ) = None

    def admin(self) -> AdminClient:
        if self._admin is None:
            self._admin = AdminClient(self.s.kafka.client_config())
        return self._admin

    # --- worker thread ----------------------------------------------------------------------
    def _probe(self) -> tuple[bool, str, dict[str, int]]:
        self.admin().poll(0)  # serves its routed log lines: unpolled they queue while Kafka is away
        try:
            md = self.admin().list_topics(timeout=self.s.probe_interval_s + 1)
        except KafkaException as e:
            return False, str(e.args[0]) if e.args else str(e), {}
        parts = {n: len(t.partitions) for n, t in md.topics.items() if t.error is None}
        return True, "", parts

    @staticmethod
    def _offsets(a: AdminClient, topic: str, n: int, spec: OffsetSpec) -> dict[int, int]:
        futs = a.list_offsets(
            {TopicPartition(topic, p): spec for p in range(n)}, request_timeout=TIMEOUT
        )
        return {tp.partition: f.result(TIMEOUT).offset for tp, f in futs.items()}

    def _sample(self, kinds: list[str]) -> dict[str, Lag]:
        # A client per sample (every kinds_interval_s): group admin calls that time out while
        # the brokers change can trip librdkafka's `eonce->refcnt > 0` assertion and abort the
        # process (librdkafka#4605, seen in tests/faults/test_broker_kill_cluster.py); a fresh
        # client also never keeps a stale leader.
        a = AdminClient(self.s.kafka.client_config())
        listed = a.list_consumer_groups(request_timeout=TIMEOUT).result(TIMEOUT)
        ids = [g.group_id for g in listed.valid]
        mine = {k: groups_of(k, kinds, ids, self.topics) for k in kinds}
        wanted = sorted({g for gs in mine.values() for g in gs})
        described = {}
        if wanted:
            futs = a.describe_consumer_groups(wanted, request_timeout=TIMEOUT)
            described = {g: f.result(TIMEOUT) for g, f in futs.items()}
        out = {}
        for kind in kinds:
            topic = self.topics.frames(kind)
            n = self.partitions.get(topic, 0)
            start = self._offsets(a, topic, n, EARLIEST) if n else {}
            end = self._offsets(a, topic, n, LATEST) if n else {}
            groups: list[GroupView] = []
            desired = None
            for gid in mine[kind]:
                req = [ConsumerGroupTopicPartitions(gid, [TopicPartition(topic, p) for p in end])]
                res = a.list_consumer_group_offsets(req, request_timeout=TIMEOUT)[gid]
                committed = {tp.partition: tp.offset for tp in res.result(TIMEOUT).topic_partitions}
                lag = lag_of(committed, start, end)
                d = described[gid]
                if gid == self.topics.group(kind):  # the group a ScaledObject scales
                    desired = desired_of(committed, start, end, len(d.members),
                                         self.s.lag_threshold, self.s.max_replicas)
                members = [
                    Member(client_id=m.client_id, host=m.host,
                           partitions=len(m.assignment.topic_partitions) if m.assignment else 0)
                    for m in d.members
                ]
                groups.append(GroupView(
                    group=gid, state=getattr(d.state, "name", str(d.state)).lower(),
                    members=members, lag=sum(lag.values()),
                    lag_by_partition={str(p): v for p, v in sorted(lag.items())},
                ))
            out[kind] = Lag(partitions=n, groups=groups, lag=sum(g.lag for g in groups),
                            workers=sum(len(g.members) for g in groups), desired=desired)
        return out

    # --- event loop -------------------------------------------------------------------------
    def _set_status(self, ok: bool, error: str) -> None:
        changed = ok != self.kafka_ok
        self.kafka_ok, self.error = ok, error
        self.checked_ms = int(time.time() * 1000)
        KAFKA_UP.set(1 if ok else 0)
        if changed:
            (log.info if ok else log.warning)("Kafka %s", "answers" if ok else f"away: {error}")
            self.on_status(ok)

    def _rates(self) -> dict[str, tuple[float, float]]:
        """Per kind: frames/s in, and results/s out per model (the mean over the models that
        answered: each model's group sees every frame, so in and out compare directly)."""
        now = time.monotonic()
        frames, results = self.counters()
        counts = (dict(frames), {k: dict(v) for k, v in results.items()})
        last, self._last_counts = self._last_counts, (now, *counts)
        if last is None:
            return {}
        dt = max(now - last[0], 1e-3)
        out = {}
        for k in set(counts[0]) | set(counts[1]):
            fps_in = (counts[0].get(k, 0) - last[1].get(k, 0)) / dt
            before = last[2].get(k, {})
            per_model = [(n - before.get(m, 0)) / dt for m, n in counts[1].get(k, {}).items()]
            active = [r for r in per_model if r > 0]
            out[k] = (round(fps_in, 2), round(sum(active) / len(active), 2) if active else 0.0)
        return out

    def _record(self, kinds: list[str], lags: dict[str, Lag] | None) -> None:
        rates = self._rates()
        keep = max(2, int(self.s.history_s / self.s.kinds_interval_s))
        now_ms = int(time.time() * 1000)
        for kind in kinds:
            fps_in, fps_out = rates.get(kind, (0.0, 0.0))
            st = self.states.get(kind)
            if st is None:
                st = self.states[kind] = KindState(history=deque(maxlen=keep))
            lag = (lags or {}).get(kind)
            if lag is not None:
                st.lag = lag
                KIND_LAG.labels(kind).set(lag.lag)
                KIND_WORKERS.labels(kind).set(lag.workers)
                for g in lag.groups:
                    GROUP_LAG.labels(kind, g.group).set(g.lag)
                    GROUP_WORKERS.labels(kind, g.group).set(len(g.members))
            st.fps_in, st.fps_out, st.sampled_ms, st.stale = fps_in, fps_out, now_ms, lag is None
            st.history.append(KindSample(
                t_ms=now_ms, lag=lag.lag if lag else None, workers=lag.workers if lag else None,
                desired=lag.desired if lag else None, fps_in=fps_in, fps_out=fps_out,
            ))

    def kind_view(self, kind: str, since_ms: int) -> KindView:
        """What /api/kinds says about a kind: the last good sample, rates, history since."""
        st = self.states.get(kind) or KindState(history=deque())
        frames = self.topics.frames(kind)
        lag = st.lag
        return KindView(
            kind=kind, topic=frames, results_topic=self.topics.results(kind),
            partitions=lag.partitions if lag else self.partitions.get(frames, 0),
            group=self.topics.group(kind), groups=lag.groups if lag else [],
            lag=lag.lag if lag else None, workers=lag.workers if lag else None,
            desired=lag.desired if lag else None, lag_threshold=self.s.lag_threshold,
            max_replicas=self.s.max_replicas, fps_in=st.fps_in, fps_out=st.fps_out,
            sampled_ms=st.sampled_ms, stale=st.stale,
            history=[h for h in st.history if h.t_ms >= since_ms],
        )

    async def run(self) -> None:
        next_kinds = 0.0
        while True:
            ok, error, parts = await asyncio.to_thread(self._probe)
            if ok:
                self.partitions = parts
                self.kinds = kinds_in(parts, self.topics, self.s.kinds)
            self._set_status(ok, error)
            if time.monotonic() >= next_kinds:
                next_kinds = time.monotonic() + self.s.kinds_interval_s
                kinds = list(self.kinds)
                lags = None
                if ok:
                    try:
                        lags = await asyncio.to_thread(self._sample, kinds)
                    except (KafkaException, KeyError, TimeoutError) as e:
                        log.warning("could not sample consumer groups: %s", e)
                self._record(kinds, lags)
            await asyncio.sleep(self.s.probe_interval_s)
