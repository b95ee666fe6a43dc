"""Every rendered object against its schema: Kubernetes' own (kubernetes-validate, strict, the
newest version it ships), KEDA's CRDs (/work/shared/schemas/keda, made strict the way the API
server's field validation is) and the Prometheus Operator's monitors (a strict subset written
for these tests, tests/deploy/schemas/monitoring.coreos.com-v1.yaml). Plus the rules no schema
states: no committed Secret, no registry host in an image name."""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.deploy.kustomize import build, split_image
from tests.deploy.support import K8S, OVERLAYS, REPO, Obj

K8S_VERSION = kubernetes_validate.latest_version()
# shared/ sits beside the repository (here and in CI's fresh clone).
KEDA_CRDS = next((p for p in (REPO.parent / "shared" / "schemas" / "keda",
                              Path("/work/shared/schemas/keda")) if p.is_dir()),
                 REPO.parent / "shared" / "schemas" / "keda")
BUILTIN = {"v1", "apps/v1", "batch/v1", "policy/v1", "networking.k8s.io/v1"}
MONITORING = Path(__file__).parent / "schemas" / "monitoring.coreos.com-v1.yaml"


def strict(schema: Any) -> Any:
    """Unknown fields are errors (kubectl's default --validate=strict), except where the CRD
    says they are kept (x-kubernetes-preserve-unknown-fields) or are a free-form map."""
    if isinstance(schema, dict):
        schema = {k: strict(v) for k, v in schema.items()}
        if (schema.get("type") == "object" and "properties" in schema
                and "additionalProperties" not in schema
                and not schema.get("x-kubernetes-preserve-unknown-fields")):
            schema["additionalProperties"] = False
    elif isinstance(schema, list):
        schema = [strict(s) for s in schema]
    return schema


@functools.cache
def keda_schemas() -> dict[str, Any]:
    assert KEDA_CRDS.is_dir(), f"KEDA CRDs not found at {KEDA_CRDS}"
    out: dict[str, Any] = {}
    for path in sorted(KEDA_CRDS.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        for version in crd["spec"]["versions"]:
            key = f"{crd['spec']['group']}/{version['name']}/{crd['spec']['names']['kind']}"
            out[key] = strict(copy.deepcopy(version["schema"]["openAPIV3Schema"]))
    return out


@functools.cache
def monitoring_schemas() -> dict[str, Any]:
    doc = yaml.safe_load(MONITORING.read_text())
    return {kind: {**schema, "definitions": doc["definitions"]}
            for kind, schema in doc["kinds"].items()}


def objects() -> list[tuple[str, Obj]]:
    out = []
    for overlay in OVERLAYS:
        for o in build(K8S / "overlays" / overlay):
            out.append((f"{overlay}:{o['kind']}/{o['metadata']['name']}", o))
    return out


OBJECTS = objects()


def test_the_overlays_render_what_the_issue_asks_for(rendered: dict[str, list[Obj]]) -> None:
    for overlay, objs in rendered.items():
        kinds = {(o["kind"], o["metadata"]["name"]) for o in objs}
        processors = {"face"} if overlay == "dev" else {"face", "person", "vehicle"}
        for k in processors:
            assert ("Deployment", f"evi-processor-{k}") in kinds
            assert ("ScaledObject", f"evi-processor-{k}") in kinds
            assert ("PodDisruptionBudget", f"evi-processor-{k}") in kinds
        for expected in [("Deployment", "evi-gateway"), ("Service", "evi-gateway"),
                         ("Ingress", "evi-gateway"), ("Deployment", "evi-producer"),
                         ("ConfigMap", "evi-models"), ("ConfigMap", "evi-streams"),
                         ("Job", "evi-topics")]:
            assert expected in kinds, f"{overlay}: {expected} missing"
    assert ("TriggerAuthentication", "evi-kafka") in {
        (o["kind"], o["metadata"]["name"]) for o in rendered["prod"]}


@pytest.mark.parametrize(("name", "obj"), OBJECTS, ids=[n for n, _ in OBJECTS])
def test_object_matches_its_schema(name: str, obj: Obj) -> None:
    if obj["apiVersion"] in BUILTIN:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    elif obj["apiVersion"].startswith("keda.sh/"):
        schema = keda_schemas()[f"{obj['apiVersion']}/{obj['kind']}"]
        jsonschema.Draft202012Validator(schema).validate(obj)
    elif obj["apiVersion"] == "monitoring.coreos.com/v1":
        jsonschema.Draft7Validator(monitoring_schemas()[obj["kind"]]).validate(obj)
    else:
        pytest.fail(f"{name}: no schema for {obj['apiVersion']} (add one before using it)")


def test_strict_validation_catches_a_typo() -> None:
    """The validators above must reject what the API server would."""
    so = next(o for _, o in OBJECTS if o["kind"] == "ScaledObject")
    bad = copy.deepcopy(so)
    bad["spec"]["maxReplicasCount"] = 12
    schema = keda_schemas()["keda.sh/v1alpha1/ScaledObject"]
    with pytest.raises(jsonschema.ValidationError, match="maxReplicasCount"):
        jsonschema.Draft202012Validator(schema).validate(bad)
    dep = copy.deepcopy(next(o for _, o in OBJECTS if o["kind"] == "Deployment"))
    dep["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(dep, K8S_VERSION, strict=True)
    monitor = copy.deepcopy(next(o for _, o in OBJECTS if o["kind"] == "PodMonitor"))
    monitor["spec"]["podMetricsEndpoints"][0]["intervall"] = "15s"
    with pytest.raises(jsonschema.ValidationError, match="intervall"):
        jsonschema.Draft7Validator(monitoring_schemas()["PodMonitor"]).validate(monitor)
    monitor["spec"]["podMetricsEndpoints"][0] = {"port": "http", "interval": "15 seconds"}
    with pytest.raises(jsonschema.ValidationError, match="15 seconds"):
        jsonschema.Draft7Validator(monitoring_schemas()["PodMonitor"]).validate(monitor)


def test_no_secret_is_committed(rendered: dict[str, list[Obj]]) -> None:
    for overlay, objs in rendered.items():
        assert not [o for o in objs if o["kind"] == "Secret"], overlay
        for o in objs:
            if o["kind"] not in ("Deployment", "Job"):
                continue
            for c in o["spec"]["template"]["spec"]["containers"]:
                for var in c.get("env", []):
                    if any(w in var["name"] for w in ("PASSWORD", "TOKEN", "SECRET")):
                        assert "secretKeyRef" in var.get("valueFrom", {}), (overlay, var)
        for cm in (o for o in objs if o["kind"] == "ConfigMap"):
            for key in cm["data"]:
                assert not any(w in key for w in ("PASSWORD", "TOKEN", "SECRET")), key


def test_images_name_no_registry_host(rendered: dict[str, list[Obj]]) -> None:
    """Registry hosts are the deployer's choice (kustomize images: newName), never ours."""
    for overlay, objs in rendered.items():
        for o in objs:
            if o["kind"] not in ("Deployment", "Job"):
                continue
            for c in o["spec"]["template"]["spec"]["containers"]:
                name, tag, _ = split_image(c["image"])
                ours = "evi-gateway" if o["metadata"]["name"].endswith("gateway") else "evi"
                assert name == ours, (overlay, c["image"])
                assert tag, f"{overlay}: {c['image']} has no tag (the overlay sets one)"
