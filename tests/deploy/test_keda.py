"""KEDA's numbers against what the processors really do (docs/scaling.md has the reasoning).

Names come from evi.topics and the processor's own effective settings (its CLI with the
manifest's args, env and mounted files), never from strings repeated here.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.metrics import MetricWrapperBase

from evi.kafka import PartitionLag
from evi.scaleplan import ScalerConfig, desired_replicas, total_lag
from evi.scaleplan import parse_args as scaleplan_args
from evi.settings import TopicSettings
from evi.topics import Topics
from processors.models import load_models_yaml, select_model
from tests.deploy.kustomize import build
from tests.deploy.support import (
    K8S,
    OVERLAYS,
    Obj,
    component,
    container_env,
    k8s_settings,
    named,
    of_kind,
    pod_spec,
)

# KEDA (pkg/scalers/kafka_scaler.go): sasl modes, and ours (KafkaSettings.sasl_mechanism).
KEDA_SASL = {"PLAIN": "plaintext", "SCRAM-SHA-256": "scram_sha256", "SCRAM-SHA-512": "scram_sha512"}
CPU_TARGET_MAX = 80  # percent: at least 20 % headroom to drain a rebalance's backlog


def scaled_objects(rendered: dict[str, list[Obj]]) -> list[tuple[str, Obj]]:
    return [(overlay, so) for overlay in OVERLAYS
            for so in of_kind(rendered[overlay], "ScaledObject")]


def cases() -> list[Any]:
    out = []
    for overlay in OVERLAYS:
        for so in of_kind(build(K8S / "overlays" / overlay), "ScaledObject"):
            out.append(pytest.param((overlay, so["metadata"]["name"]),
                                    id=f"{overlay}:{so['metadata']['name']}"))
    return out


CASES = cases()


class Scaling:
    """One ScaledObject with its target Deployment and the target's effective settings."""

    def __init__(self, rendered: dict[str, list[Obj]], overlay: str, name: str) -> None:
        self.objs = rendered[overlay]
        self.so = named(self.objs, "ScaledObject", name)
        self.spec = self.so["spec"]
        ref = self.spec["scaleTargetRef"]
        assert ref.get("kind", "Deployment") == "Deployment"
        self.target = named(self.objs, "Deployment", ref["name"])
        self.settings = k8s_settings(self.objs, self.target)
        self.topics = Topics(TopicSettings(**self.settings["topics"]))
        self.kind = self.settings["kind"]
        self.triggers = {t["type"]: t for t in self.spec["triggers"]}
        self.kafka = self.triggers["kafka"]["metadata"]

    def container(self) -> Obj:
        name = self.spec["scaleTargetRef"].get("envSourceContainerName")
        containers = pod_spec(self.target)["containers"]
        return next(c for c in containers if c["name"] == name) if name else containers[0]

    def replica_fps(self) -> int:
        return int(self.so["metadata"]["annotations"]["evi/replica-fps"])

    def behavior(self, direction: str) -> Obj:
        b: Obj = self.spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"][direction]
        return b


@pytest.fixture(params=CASES)
def scaling(request: pytest.FixtureRequest, rendered: dict[str, list[Obj]]) -> Scaling:
    overlay, name = request.param
    return Scaling(rendered, overlay, name)


def test_every_processor_has_exactly_one_scaled_object(rendered: dict[str, list[Obj]]) -> None:
    for overlay, objs in rendered.items():
        processors = sorted(o["metadata"]["name"] for o in of_kind(objs, "Deployment")
                            if component(o) == "processor")
        targets = sorted(so["spec"]["scaleTargetRef"]["name"]
                         for so in of_kind(objs, "ScaledObject"))
        assert targets == processors, overlay
        for dep in of_kind(objs, "Deployment"):
            if dep["metadata"]["name"] in processors:
                assert "replicas" not in dep["spec"], "replicas belong to KEDA, not to the manifest"


def test_topic_and_group_are_the_processors_own(scaling: Scaling) -> None:
    assert scaling.kafka["topic"] == scaling.topics.frames(scaling.kind)
    assert scaling.kafka["consumerGroup"] == scaling.topics.group(
        scaling.kind, scaling.settings["model"])
    assert scaling.so["metadata"]["name"] == scaling.target["metadata"]["name"]
    assert scaling.so["metadata"]["labels"]["evi/kind"] == scaling.kind


def test_bootstrap_servers_resolve_to_the_processors(scaling: Scaling) -> None:
    """bootstrapServersFromEnv: KEDA reads the variable from the target's container."""
    env_name = scaling.kafka["bootstrapServersFromEnv"]
    assert "bootstrapServers" not in scaling.kafka
    env = container_env(scaling.objs, scaling.container())
    assert env[env_name] == scaling.settings["kafka"]["bootstrap_servers"]


def test_offset_reset_policy_is_the_processors(scaling: Scaling) -> None:
    assert scaling.kafka["offsetResetPolicy"] == scaling.settings["auto_offset_reset"]


def test_replicas_never_exceed_partitions(scaling: Scaling) -> None:
    """KEDA caps at the partition count only when lag >= (partitions + 1) x lagThreshold (an
    integer division in getTotalLag), so maxReplicaCount is the real cap."""
    partitions = scaling.settings["topics"]["frame_partitions"]
    assert 1 <= scaling.spec["maxReplicaCount"] <= partitions
    assert 0 <= scaling.spec.get("minReplicaCount", 0) <= scaling.spec["maxReplicaCount"]
    assert scaling.kafka.get("allowIdleConsumers", "false") == "false"


def busy_replica_lag(scaling: Scaling) -> float:
    s = scaling.settings
    return float(scaling.replica_fps() * s["commit_interval_s"] + 2 * s["batch_max"])


def test_lag_threshold_sits_well_above_the_lag_of_a_busy_replica(scaling: Scaling) -> None:
    """A replica keeping up still shows lag: frames done but not committed (fps x commit
    interval) plus the two micro-batches in flight (the next starts while one finishes). The
    prefetch buffer is not counted: it only fills when the replica falls behind, which is when
    scaling out is right. Below 1/4 of lagThreshold that lag alone never asks for more replicas
    than there are."""
    busy_lag = busy_replica_lag(scaling)
    threshold = int(scaling.kafka["lagThreshold"])
    assert threshold >= 4 * busy_lag, f"lagThreshold {threshold} < 4 x {busy_lag}"
    # ...and is still a short backlog: at most 6 s of one replica's work.
    assert threshold <= 6 * scaling.replica_fps()
    assert int(scaling.kafka["activationLagThreshold"]) >= 0


def test_lag_metric_is_an_average_target(scaling: Scaling) -> None:
    """desired = ceil(total lag / lagThreshold) needs the default AverageValue target."""
    assert scaling.triggers["kafka"].get("metricType", "AverageValue") == "AverageValue"
    assert "excludePersistentLag" not in scaling.kafka
    assert "limitToPartitionsWithLag" not in scaling.kafka


def test_scale_events_pay_for_themselves(scaling: Scaling) -> None:
    """A rebalance stops the whole group for at most a session timeout. Scale-up waits until a
    rebalance's own backlog would have drained; scale-down waits long enough that the pod-time
    saved dwarfs the pod-time every worker loses in the rebalance."""
    session = scaling.settings["session_timeout_s"]
    cpu = int(scaling.triggers["cpu"]["metadata"]["value"])
    assert 50 <= cpu <= CPU_TARGET_MAX
    headroom = 1 - cpu / 100
    up = scaling.behavior("scaleUp")
    assert up["stabilizationWindowSeconds"] >= math.ceil(session / headroom)
    down = scaling.behavior("scaleDown")
    worst_rebalance = scaling.spec["maxReplicaCount"] * session  # pod-seconds lost
    assert down["stabilizationWindowSeconds"] >= 5 * worst_rebalance
    assert down["stabilizationWindowSeconds"] >= 300  # the HPA default, never shorter
    for policy in down["policies"]:
        assert policy["periodSeconds"] >= 5 * worst_rebalance / 2
    if scaling.spec.get("minReplicaCount", 0) == 0:
        assert scaling.spec["cooldownPeriod"] >= down["stabilizationWindowSeconds"]
    assert 5 <= scaling.spec["pollingInterval"] <= 30


def test_cpu_trigger_has_a_request_to_measure_against(scaling: Scaling) -> None:
    trigger = scaling.triggers["cpu"]
    assert trigger["metricType"] == "Utilization"
    container = next(c for c in pod_spec(scaling.target)["containers"]
                     if c["name"] == trigger["metadata"]["containerName"])
    resources = container["resources"]
    assert resources["requests"]["cpu"] == resources["limits"]["cpu"]


def test_models_use_the_cpus_they_get(scaling: Scaling, tmp_path: Path) -> None:
    """OpenVINO sizes its pool from the node's cores unless told: tell it the container's."""
    cpus = scaling.container()["resources"]["limits"]["cpu"]
    models_file = tmp_path / "models.yaml"
    models_file.write_text(named(scaling.objs, "ConfigMap", "evi-models")["data"]["models.yaml"])
    served = select_model(load_models_yaml(models_file), scaling.kind, scaling.settings["model"])
    assert served.inference_threads == int(cpus), (scaling.kind, cpus)


def scaler_config(scaling: Scaling) -> ScalerConfig:
    """evi.scaleplan's model of KEDA's kafka trigger (+ HPA), with this trigger's settings."""
    m = scaling.kafka
    flag = {"true": True, "false": False}
    return ScalerConfig(
        lag_threshold=int(m["lagThreshold"]),
        activation_lag_threshold=int(m.get("activationLagThreshold", "0")),
        offset_reset_policy=m.get("offsetResetPolicy", "latest"),
        allow_idle_consumers=flag[m.get("allowIdleConsumers", "false")],
        limit_to_partitions_with_lag=flag[m.get("limitToPartitionsWithLag", "false")],
        exclude_persistent_lag=flag[m.get("excludePersistentLag", "false")],
        min_replicas=scaling.spec.get("minReplicaCount", 0),
        max_replicas=scaling.spec["maxReplicaCount"],
    )


def test_a_group_that_keeps_up_never_scales_out_on_its_lag(scaling: Scaling) -> None:
    """N replicas at full speed, each with its frames done-but-uncommitted and in flight,
    spread over the partitions: the lag trigger alone never asks for more than N."""
    cfg = scaler_config(scaling)
    s = scaling.settings
    partitions = s["topics"]["frame_partitions"]
    busy = int(busy_replica_lag(scaling))
    for n in range(max(cfg.min_replicas, 1), cfg.max_replicas + 1):
        per_partition = math.ceil(n * busy / partitions)
        lags = [PartitionLag(p, 1000, 1000 + per_partition, 0) for p in range(partitions)]
        assert desired_replicas(total_lag(lags, cfg), cfg, n) <= n, n


def test_a_real_backlog_scales_out_and_hits_the_cap(scaling: Scaling) -> None:
    cfg = scaler_config(scaling)
    partitions = scaling.settings["topics"]["frame_partitions"]
    backlog = 5 * cfg.lag_threshold  # spread evenly
    lags = [PartitionLag(p, 0, backlog // partitions, 0) for p in range(partitions)]
    assert desired_replicas(total_lag(lags, cfg), cfg, 1) == min(5, cfg.max_replicas)
    # KEDA's own cap lets one replica past the partitions (integer division); ours does not.
    just_under = [PartitionLag(p, 0, cfg.lag_threshold + cfg.lag_threshold // partitions - 1, 0)
                  for p in range(partitions)]
    uncapped = ScalerConfig(lag_threshold=cfg.lag_threshold, max_replicas=100)
    assert desired_replicas(total_lag(just_under, uncapped), uncapped, 1) == partitions + 1
    assert desired_replicas(total_lag(just_under, cfg), cfg, 1) <= partitions


def test_a_new_group_counts_every_retained_frame(scaling: Scaling) -> None:
    """With earliest and no commit yet KEDA counts each partition's end offset (not end -
    start), so a new group on a topic that retention already trimmed starts at the cap."""
    cfg = scaler_config(scaling)
    partitions = scaling.settings["topics"]["frame_partitions"]
    trimmed = [PartitionLag(p, -1, 1_000_000, 999_990) for p in range(partitions)]
    assert sum(p.lag for p in trimmed) == 10 * partitions  # what is really left to read
    assert desired_replicas(total_lag(trimmed, cfg), cfg, 1) == cfg.max_replicas


def test_evi_lag_defaults_follow_the_face_scaled_object() -> None:
    """`evi lag` (evi/scaleplan.py) predicts KEDA with the base face trigger's numbers."""
    (so,) = of_kind(build(K8S / "keda"), "ScaledObject")
    m = so["spec"]["triggers"][0]["metadata"]
    a = scaleplan_args([])
    assert a.lag_threshold == int(m["lagThreshold"])
    assert a.activation_lag_threshold == int(m["activationLagThreshold"])
    assert a.offset_reset_policy == m["offsetResetPolicy"]
    assert (a.min_replicas, a.max_replicas) == (so["spec"]["minReplicaCount"],
                                                so["spec"]["maxReplicaCount"])


def test_kafka_auth_matches_the_processors(scaling: Scaling) -> None:
    kafka = scaling.settings["kafka"]
    tls = kafka["security_protocol"] in ("SSL", "SASL_SSL")
    sasl = kafka["security_protocol"].startswith("SASL_")
    assert scaling.kafka.get("tls", "disable") == ("enable" if tls else "disable")
    if not sasl:
        assert "sasl" not in scaling.kafka and "authenticationRef" not in scaling.triggers["kafka"]
        return
    assert scaling.kafka["sasl"] == KEDA_SASL[kafka["sasl_mechanism"]]
    auth = named(scaling.objs, "TriggerAuthentication",
                 scaling.triggers["kafka"]["authenticationRef"]["name"])
    params = {r["parameter"]: r for r in auth["spec"]["secretTargetRef"]}
    assert {"username", "password"} <= set(params)
    # KEDA has its own Describe-only user (docs/security.md), from one Secret with the same keys
    # the pods read theirs by; never the processors' user, which may read frames.
    env = {v["name"]: v for v in scaling.container()["env"]}
    (secret,) = {params[p]["name"] for p in ("username", "password")}
    for param, var in (("username", "EVI_KAFKA__SASL_USERNAME"),
                       ("password", "EVI_KAFKA__SASL_PASSWORD")):
        ref = env[var]["valueFrom"]["secretKeyRef"]
        assert params[param]["key"] == ref["key"] and secret != ref["name"]
    if tls and kafka["ssl_cafile"]:
        volumes = {v["name"]: v for v in pod_spec(scaling.target)["volumes"]}
        mounts = {m["mountPath"]: m["name"] for m in scaling.container()["volumeMounts"]}
        directory, _, filename = kafka["ssl_cafile"].rpartition("/")
        ca_secret = volumes[mounts[directory]]["secret"]["secretName"]
        assert (params["ca"]["name"], params["ca"]["key"]) == (ca_secret, filename)


def processor_metrics() -> dict[str, MetricWrapperBase]:
    import processors.metrics

    return {m._name: m for m in vars(processors.metrics).values()
            if isinstance(m, MetricWrapperBase)}


def test_prometheus_trigger_queries_a_real_processor_gauge(rendered: dict[str, list[Obj]]) -> None:
    """`evi_processor_seconds_behind` is a gauge per worker: `max` (the worst worker) against a
    Value target; `sum` would grow with the replica count and scale without end."""
    seen = 0
    metrics = processor_metrics()
    for overlay, so in scaled_objects(rendered):
        for trigger in so["spec"]["triggers"]:
            if trigger["type"] != "prometheus":
                continue
            seen += 1
            query = trigger["metadata"]["query"]
            m = re.fullmatch(r"max\((evi_[a-z_]+)\{(.*)\}\)", query)
            assert m, f"{overlay}: {query!r} is not max(<gauge>{{...}})"
            name, selector = m.groups()
            labels = dict(re.findall(r'(\w+)="([^"]*)"', selector))
            assert labels["kind"] == so["metadata"]["labels"]["evi/kind"]
            namespace = so["metadata"]["namespace"]
            assert labels.get("namespace", namespace) == namespace
            assert trigger["metricType"] == "Value"
            assert float(trigger["metadata"]["threshold"]) > 0
            assert name in metrics, (
                f"{name} is not defined in processors/metrics.py (the processor must export it "
                "before KEDA can scale on it)")
            metric = metrics[name]
            assert metric._type == "gauge", f"{name} is a {metric._type}, not a gauge"
            assert "kind" in metric._labelnames
    assert seen >= 1, "the prod overlay has the optional Prometheus trigger"
