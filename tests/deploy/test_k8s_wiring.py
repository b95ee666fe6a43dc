"""The manifests against the code: ports, probes, env names, mounted config files, selectors,
references between objects, drain times. The services' effective settings come from their own
CLI (`--print-settings`) run with each container's args, env and mounted ConfigMap files."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from evi.settings import ServiceSettings, TopicSettings
from evi.topics import Topics
from gateway.settings import GatewaySettings
from processors.models import load_models_yaml, select_model
from processors.settings import ProcessorSettings
from producers.config import build_streams, read_file
from producers.settings import ProducerSettings
from tests.deploy.support import (
    OVERLAYS,
    Obj,
    component,
    configmap_files,
    container_env,
    k8s_settings,
    named,
    of_kind,
    pod_spec,
    topics_created,
    workloads,
)

SETTINGS: dict[str, type[ServiceSettings]] = {
    "processor": ProcessorSettings,
    "gateway": GatewaySettings,
    "producer": ProducerSettings,
    "topics": ServiceSettings,
}
# The port each service serves on, as its settings name it (producer: --metrics-port 9101),
# and the one its /metrics is on (the gateway's is its own, never behind the Ingress).
PORT_FIELD = {"processor": "web_port", "gateway": "port", "producer": "metrics_port"}
METRICS_FIELD = {"processor": "web_port", "gateway": "metrics_port", "producer": "metrics_port"}


def field_exists(model: type[BaseModel], parts: list[str]) -> bool:
    """EVI_A__B__C names field a.b.c of the settings model (pydantic-settings' env parsing)."""
    field = model.model_fields.get(parts[0])
    if field is None:
        return False
    if len(parts) == 1:
        return True
    nested = [t for t in (field.annotation, *typing.get_args(field.annotation))
              if isinstance(t, type) and issubclass(t, BaseModel)]
    return bool(nested) and field_exists(nested[0], parts[1:])


def test_field_exists_knows_real_and_made_up_names() -> None:
    assert field_exists(ProcessorSettings, ["kafka", "bootstrap_servers"])
    assert field_exists(ProcessorSettings, ["web_port"])
    assert not field_exists(ProcessorSettings, ["kafka", "bootstrap"])
    assert not field_exists(ProcessorSettings, ["port"])
    assert not field_exists(GatewaySettings, ["host", "name"])


def each_container(rendered: dict[str, list[Obj]]) -> list[tuple[str, list[Obj], Obj, Obj]]:
    return [(overlay, objs, w, c) for overlay, objs in rendered.items()
            for w in workloads(objs) for c in pod_spec(w)["containers"]]


def test_env_names_are_settings_fields(rendered: dict[str, list[Obj]]) -> None:
    for overlay, objs, workload, container in each_container(rendered):
        model = SETTINGS[component(workload)]
        for name in container_env(objs, container):
            assert name.startswith("EVI_"), f"{overlay} {workload['metadata']['name']}: {name}"
            parts = name.removeprefix("EVI_").lower().split("__")
            assert field_exists(model, parts), (
                f"{overlay} {workload['metadata']['name']}: {name} is not a {model.__name__} "
                "field (pydantic-settings would ignore it silently)")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_listen_where_the_manifests_probe(rendered: dict[str, list[Obj]],
                                                   overlay: str) -> None:
    objs = rendered[overlay]
    for workload in of_kind(objs, "Deployment"):
        role = component(workload)
        settings = k8s_settings(objs, workload)
        (container,) = pod_spec(workload)["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        served = settings[PORT_FIELD[role]]
        metrics = settings[METRICS_FIELD[role]]
        assert sorted(ports.values()) == sorted({served, metrics}), (
            workload["metadata"]["name"], ports, served, metrics)
        if role in ("processor", "gateway"):
            for field in {PORT_FIELD[role], METRICS_FIELD[role]}:
                default = SETTINGS[role].model_fields[field].default
                assert settings[field] == default, "the manifest port is the settings default"
        annotations = workload["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert int(annotations["prometheus.io/port"]) == metrics
        assert annotations["prometheus.io/path"] == "/metrics"
        probes = {k: container[k] for k in ("startupProbe", "livenessProbe", "readinessProbe")
                  if k in container}
        assert {"livenessProbe", "readinessProbe"} <= set(probes)
        for probe in probes.values():
            port = probe["httpGet"]["port"]
            assert ports.get(port, port) == served
        paths = {k: p["httpGet"]["path"] for k, p in probes.items()}
        expected = {
            "processor": {"livenessProbe": "/healthz", "readinessProbe": "/healthz"},
            "gateway": {"livenessProbe": "/healthz", "readinessProbe": "/readyz"},
            "producer": {"livenessProbe": "/metrics", "readinessProbe": "/metrics"},
        }[role]
        assert {k: paths[k] for k in expected} == expected
        if role == "gateway":
            assert settings["host"] == "0.0.0.0", "127.0.0.1 would be unreachable from the pod IP"


def test_processor_args_and_settings(rendered: dict[str, list[Obj]]) -> None:
    for _overlay, objs in rendered.items():
        for dep in of_kind(objs, "Deployment"):
            if component(dep) != "processor":
                continue
            settings = k8s_settings(objs, dep)
            kind = dep["metadata"]["labels"]["evi/kind"]
            assert settings["kind"] == kind
            # Named as its consumer group: evi-processor-<kind>[-<model>] (deploy/generate.py).
            group = Topics(TopicSettings(**settings["topics"])).group(kind, settings["model"])
            assert dep["metadata"]["name"] == group
            assert settings["auto_offset_reset"] == "earliest"
            assert settings["models_file"] == "/etc/evi/models/models.yaml" or settings[
                "models_file"].endswith("/etc/evi/models/models.yaml")


def test_each_processor_serves_a_model_of_its_kind(rendered: dict[str, list[Obj]],
                                                  tmp_path: Path) -> None:
    """The mounted models.yaml, through the processor's own loader and model choice."""
    for overlay, objs in rendered.items():
        models_file = tmp_path / overlay / "models.yaml"
        models_file.parent.mkdir()
        models_file.write_text(named(objs, "ConfigMap", "evi-models")["data"]["models.yaml"])
        catalog = load_models_yaml(models_file)  # ConfigError names the kind and the field
        for dep in of_kind(objs, "Deployment"):
            if component(dep) == "processor":
                settings = k8s_settings(objs, dep)
                model = select_model(catalog, settings["kind"], settings["model"])
                assert model.name


def test_mounted_config_files_parse_with_the_services_own_code(
    rendered: dict[str, list[Obj]], tmp_path: Path
) -> None:
    for overlay, objs in rendered.items():
        models = yaml.safe_load(named(objs, "ConfigMap", "evi-models")["data"]["models.yaml"])
        kinds = {d["metadata"]["labels"]["evi/kind"] for d in of_kind(objs, "Deployment")
                 if component(d) == "processor"}
        assert kinds <= set(models), f"{overlay}: processors without a model entry"
        streams_file = tmp_path / overlay / "streams.yaml"
        streams_file.parent.mkdir()
        streams_file.write_text(named(objs, "ConfigMap", "evi-streams")["data"]["streams.yaml"])
        doc = read_file(streams_file)
        good, errors = build_streams(doc["streams"], doc["defaults"], {}, str(streams_file))
        assert not errors and good, (overlay, errors)
        fed = {k for s in good for k in s.kinds}
        assert fed <= kinds, f"{overlay}: streams feed kinds nobody processes: {fed - kinds}"


def test_topics_job_creates_every_processors_topic(rendered: dict[str, list[Obj]]) -> None:
    for _overlay, objs in rendered.items():
        job = named(objs, "Job", "evi-topics")
        (container,) = pod_spec(job)["containers"]
        specs = topics_created(list(container["args"]), container_env(objs, container))
        created = {s.name: s.partitions for s in specs}
        for dep in of_kind(objs, "Deployment"):
            if component(dep) != "processor":
                continue
            settings = k8s_settings(objs, dep)
            topics = Topics(TopicSettings(**settings["topics"]))
            kind = settings["kind"]
            assert created.get(topics.frames(kind)) == settings["topics"]["frame_partitions"]
            assert topics.results(kind) in created and topics.dlq(kind) in created


REPLICATION = {"dev": (1, 1), "prod": (3, 2)}  # (replication factor, min.insync.replicas)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_topics_are_replicated_as_the_overlay_says(rendered: dict[str, list[Obj]],
                                                   overlay: str) -> None:
    """Dev: one broker, 1/1. Prod: 3/2, so one broker may die with no acks=all write failing.
    Every topic the Job creates carries both; every service agrees (one ConfigMap)."""
    objs = rendered[overlay]
    job = named(objs, "Job", "evi-topics")
    (container,) = pod_spec(job)["containers"]
    specs = topics_created(list(container["args"]), container_env(objs, container))
    rf, isr = REPLICATION[overlay]
    assert specs
    for spec in specs:
        assert spec.replication_factor == rf, (overlay, spec.name)
        assert spec.config["min.insync.replicas"] == str(isr), (overlay, spec.name)
    for dep in of_kind(objs, "Deployment"):
        topics = k8s_settings(objs, dep)["topics"]
        assert (topics["replication_factor"], topics["min_insync_replicas"]) == (rf, isr)


def test_selectors_and_references_hold(rendered: dict[str, list[Obj]]) -> None:
    for _overlay, objs in rendered.items():
        pods = [(w, w["spec"]["template"]["metadata"]["labels"]) for w in workloads(objs)]
        for dep in of_kind(objs, "Deployment"):
            selector = dep["spec"]["selector"]["matchLabels"]
            assert selector.items() <= dep["spec"]["template"]["metadata"]["labels"].items()
        for pdb in of_kind(objs, "PodDisruptionBudget"):
            sel = pdb["spec"]["selector"]["matchLabels"]
            hits = [w for w, labels in pods if sel.items() <= labels.items()]
            assert len(hits) == 1 and hits[0]["kind"] == "Deployment", pdb["metadata"]["name"]
            assert pdb["spec"].get("maxUnavailable") == 1 and "minAvailable" not in pdb["spec"]
        for svc in of_kind(objs, "Service"):
            hits = [w for w, labels in pods if svc["spec"]["selector"].items() <= labels.items()]
            assert len(hits) == 1, svc["metadata"]["name"]
            (container,) = pod_spec(hits[0])["containers"]
            names = {p["name"] for p in container["ports"]}
            for port in svc["spec"]["ports"]:
                assert port["targetPort"] in names
        for ing in of_kind(objs, "Ingress"):
            for rule in ing["spec"]["rules"]:
                for path in rule["http"]["paths"]:
                    backend = path["backend"]["service"]
                    svc = named(objs, "Service", backend["name"])
                    assert backend["port"]["name"] in {p["name"] for p in svc["spec"]["ports"]}
        for w in workloads(objs):
            spec = pod_spec(w)
            volumes = {v["name"]: v for v in spec.get("volumes", [])}
            for c in spec["containers"]:
                for mount in c.get("volumeMounts", []):
                    volume = volumes[mount["name"]]
                    if "configMap" in volume:
                        named(objs, "ConfigMap", volume["configMap"]["name"])
                    if "secret" in volume:
                        # Secrets are created by hand: which are required is test_k8s_security's.
                        assert isinstance(volume["secret"]["optional"], bool)
                for var in c.get("env", []):
                    ref = var.get("valueFrom", {}).get("secretKeyRef")
                    if ref:
                        assert isinstance(ref["optional"], bool), (w["metadata"]["name"], var)


def test_pods_are_locked_down_and_sized(rendered: dict[str, list[Obj]]) -> None:
    for overlay, objs in rendered.items():
        for w in workloads(objs):
            spec = pod_spec(w)
            assert spec["securityContext"]["runAsNonRoot"] is True
            assert spec["securityContext"]["runAsUser"] == 10001  # the image's user
            assert spec["automountServiceAccountToken"] is False
            for c in spec["containers"]:
                sc = c["securityContext"]
                assert sc["allowPrivilegeEscalation"] is False
                assert sc["readOnlyRootFilesystem"] is True
                assert sc["capabilities"]["drop"] == ["ALL"]
                for part in ("requests", "limits"):
                    assert {"cpu", "memory"} <= set(c["resources"][part]), (overlay, c["name"])


def test_writable_paths_are_mounted(rendered: dict[str, list[Obj]]) -> None:
    """With a read-only root: faust's data dir and OpenVINO's cache are emptyDirs."""
    for _overlay, objs in rendered.items():
        for dep in of_kind(objs, "Deployment"):
            if component(dep) != "processor":
                continue
            settings = k8s_settings(objs, dep)
            (container,) = pod_spec(dep)["containers"]
            mounts = {m["mountPath"] for m in container["volumeMounts"]}
            for sub in ("faust", "ov-cache"):
                assert f"{settings['cache_dir']}/{sub}" in mounts
            assert "/tmp" in mounts


def test_drains_fit_in_the_grace_period(rendered: dict[str, list[Obj]]) -> None:
    for _overlay, objs in rendered.items():
        for dep in of_kind(objs, "Deployment"):
            settings = k8s_settings(objs, dep)
            grace = pod_spec(dep)["terminationGracePeriodSeconds"]
            role = component(dep)
            if role == "processor":
                # The worker's own drain (stop fetching, finish the batch, commit, leave the
                # group) gives up after drain_timeout_s; the kubelet's SIGKILL must come later.
                assert grace >= settings["drain_timeout_s"] + 15
                assert grace <= 120
            elif role == "producer":
                assert grace >= settings["publisher"]["flush_timeout_s"] + 10
                assert dep["spec"]["replicas"] == 1
                assert dep["spec"]["strategy"]["type"] == "Recreate"
            else:
                assert grace >= 15


def test_configmaps_are_all_used(rendered: dict[str, list[Obj]]) -> None:
    for overlay, objs in rendered.items():
        used: set[str] = set()
        for w in workloads(objs):
            spec = pod_spec(w)
            used |= {v["configMap"]["name"] for v in spec.get("volumes", []) if "configMap" in v}
            for c in spec["containers"]:
                used |= {s["configMapRef"]["name"] for s in c.get("envFrom", [])}
                assert configmap_files(objs, spec, c) is not None
        assert {cm["metadata"]["name"] for cm in of_kind(objs, "ConfigMap")} == used, overlay
