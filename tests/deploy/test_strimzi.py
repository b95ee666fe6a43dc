"""The Strimzi overlay (deploy/k8s/overlays/strimzi): every object against its schema, the
KafkaTopics and KafkaUsers against Strimzi 1.2.0's own CRDs (vendored, digests checked); the
names Strimzi gives things (`<cluster>-kafka-bootstrap`, a KafkaUser's Secret, the
`<cluster>-cluster-ca-cert` Secret) are the ones the containers and KEDA use; the topics are
what `evi kafka topics` makes; the ACLs are kafka.sh's, which tests/security proves on a broker."""

from __future__ import annotations

import copy
import functools
import hashlib
import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.deploy.kustomize import build
from tests.deploy.support import (
    K8S,
    REPO,
    Obj,
    component,
    container_env,
    named,
    of_kind,
    pod_spec,
    topics_created,
)
from tests.deploy.test_k8s_schemas import (
    BUILTIN,
    K8S_VERSION,
    keda_schemas,
    monitoring_schemas,
    strict,
)

STRIMZI = Path(__file__).parent / "schemas" / "strimzi"
CRDS = {  # Strimzi 1.2.0, install/cluster-operator/04{3,4}-Crd-*.yaml (schemas/README.md)
    "kafkatopics.kafka.strimzi.io.yaml":
        "36390f0731c699448076d4ee739e8b7f331d083e91a7fb71500aaa830ab1127e",
    "kafkausers.kafka.strimzi.io.yaml":
        "c7e91b9b027a516b43dc7d369e781ee23a6ea177ae15fe0c33af6f722e26e05f",
}
# KEDA's user beside kafka.sh's principals: docs/security.md, "KEDA".
KEDA_ACLS = {("keda", "topic", "evi.frames.", "Describe"), ("keda", "group", "evi-processor-",
                                                            "Describe")}


@functools.cache
def objects() -> list[Obj]:
    return build(K8S / "overlays" / "strimzi")


@functools.cache
def strimzi_schemas() -> dict[str, Any]:
    out = {}
    for name, digest in CRDS.items():
        raw = (STRIMZI / name).read_bytes()
        assert hashlib.sha256(raw).hexdigest() == digest, f"{name}: not the vendored file"
        crd = yaml.safe_load(raw)
        for version in crd["spec"]["versions"]:
            key = f"{crd['spec']['group']}/{version['name']}/{crd['spec']['names']['kind']}"
            out[key] = strict(copy.deepcopy(version["schema"]["openAPIV3Schema"]))
    return out


def cluster() -> str:
    names = {o["metadata"]["labels"]["strimzi.io/cluster"] for o in objects()
             if o["apiVersion"].startswith("kafka.strimzi.io/")}
    assert len(names) == 1, names
    name: str = names.pop()
    return name


def users() -> dict[str, Obj]:
    return {u["metadata"]["name"]: u for u in of_kind(objects(), "KafkaUser")}


@pytest.mark.parametrize("i", range(len(objects())),
                         ids=[f"{o['kind']}/{o['metadata']['name']}" for o in objects()])
def test_object_matches_its_schema(i: int) -> None:
    obj = objects()[i]
    if obj["apiVersion"] in BUILTIN:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    elif obj["apiVersion"].startswith("keda.sh/"):
        schema = keda_schemas()[f"{obj['apiVersion']}/{obj['kind']}"]
        jsonschema.Draft202012Validator(schema).validate(obj)
    elif obj["apiVersion"] == "monitoring.coreos.com/v1":
        jsonschema.Draft7Validator(monitoring_schemas()[obj["kind"]]).validate(obj)
    elif obj["apiVersion"].startswith("kafka.strimzi.io/"):
        schema = strimzi_schemas()[f"{obj['apiVersion']}/{obj['kind']}"]
        jsonschema.Draft202012Validator(schema).validate(obj)
    else:
        pytest.fail(f"no schema for {obj['apiVersion']}")


def test_strimzi_schemas_refuse_what_the_api_server_would() -> None:
    topic = copy.deepcopy(of_kind(objects(), "KafkaTopic")[0])
    topic["spec"]["replicationFactor"] = 3
    schema = strimzi_schemas()["kafka.strimzi.io/v1/KafkaTopic"]
    with pytest.raises(jsonschema.ValidationError, match="replicationFactor"):
        jsonschema.Draft202012Validator(schema).validate(topic)
    user = copy.deepcopy(next(iter(users().values())))
    user["spec"]["authorization"]["acls"][0]["operations"] = ["Publish"]
    schema = strimzi_schemas()["kafka.strimzi.io/v1/KafkaUser"]
    with pytest.raises(jsonschema.ValidationError, match="Publish"):
        jsonschema.Draft202012Validator(schema).validate(user)


def test_services_reach_strimzis_bootstrap_service_with_its_secrets() -> None:
    objs, c = objects(), cluster()
    ca = f"{c}-cluster-ca-cert"
    bootstrap = named(objs, "ConfigMap", "evi-kafka")["data"]["EVI_KAFKA__BOOTSTRAP_SERVERS"]
    assert re.fullmatch(rf"{c}-kafka-bootstrap\.[a-z0-9-]+\.svc:9093", bootstrap), bootstrap
    workloads = of_kind(objs, "Deployment") + of_kind(objs, "Job")
    assert {component(w) for w in workloads} == {"gateway", "producer", "processor"}
    for w in workloads:
        spec = pod_spec(w)
        for container in spec["containers"]:
            env = container_env(objs, container)
            user = env["EVI_KAFKA__SASL_USERNAME"]
            assert user in users(), (w["metadata"]["name"], user)
            assert users()[user]["metadata"]["labels"]["app.kubernetes.io/component"] == (
                component(w))
            assert env["EVI_KAFKA__SASL_PASSWORD"] == f"placeholder-{user}-password"
            assert env["EVI_KAFKA__BOOTSTRAP_SERVERS"] == bootstrap
            assert env["EVI_KAFKA__SSL_CAFILE"].endswith("/ca.crt")
        secrets = {v["secret"]["secretName"] for v in spec.get("volumes", []) if "secret" in v}
        assert ca in secrets and "evi-kafka-ca" not in secrets, w["metadata"]["name"]
    (auth,) = of_kind(objs, "TriggerAuthentication")
    refs = {r["parameter"]: (r["name"], r["key"]) for r in auth["spec"]["secretTargetRef"]}
    (user_ref,) = auth["spec"]["configMapTargetRef"]
    keda = named(objs, "ConfigMap", user_ref["name"])["data"][user_ref["key"]]
    assert refs == {"password": (keda, "password"), "ca": (ca, "ca.crt")}
    assert keda in users()
    # Nothing reads a `username` key: a Strimzi user Secret has `password` and
    # `sasl.jaas.config` only (user-operator KafkaUserModel.generateSecret).
    assert "key: username" not in yaml.safe_dump_all(objs)


def test_topics_are_what_evi_kafka_topics_would_create() -> None:
    prod = build(K8S / "overlays" / "prod")
    job = named(prod, "Job", "evi-topics")
    (container,) = pod_spec(job)["containers"]
    env = {k: v for k, v in container_env(prod, container).items() if k.startswith("EVI_")}
    specs = topics_created(container["args"], env)
    topics = {t["spec"]["topicName"]: t for t in of_kind(objects(), "KafkaTopic")}
    assert sorted(topics) == sorted(s.name for s in specs)
    for s in specs:
        t = topics[s.name]
        assert t["metadata"]["name"] == s.name.replace(".", "-")
        assert (t["spec"]["partitions"], t["spec"]["replicas"]) == (
            s.partitions, s.replication_factor), s.name
        assert {k: str(v) for k, v in t["spec"]["config"].items()} == dict(s.config), s.name
    assert not of_kind(objects(), "Job"), "the Topic Operator owns the topics"
    # Every processor's kind has its frames, results and dead-letter topics.
    kinds = {d["metadata"]["labels"]["evi/kind"] for d in of_kind(objects(), "Deployment")
             if component(d) == "processor"}
    assert kinds == {"face", "person", "vehicle"}
    for k in kinds:
        assert {f"evi.frames.{k}", f"evi.results.{k}", f"evi.dlq.{k}"} <= set(topics)


def kafka_sh_acls() -> set[tuple[str, str, str, str]]:
    """(who, resource type, prefix, operation) from deploy/kafka/kafka.sh's acl_rules."""
    text = (REPO / "deploy" / "kafka" / "kafka.sh").read_text()
    body = re.search(r"acl_rules\(\) \{.*?<<RULES\n(.*?)\nRULES", text, re.S)
    assert body is not None
    out = set()
    for line in body.group(1).replace("$p", "evi").splitlines():
        who, ops, resources = line.split("|")
        for r in resources.split():
            kind, name = r.split(":", 1)
            out |= {(who.removeprefix("evi-"), kind, name, op) for op in ops.split()}
    assert len(out) > 20
    return out


def test_users_have_kafka_shs_acls_and_keda_its_two() -> None:
    got = set()
    for name, u in users().items():
        assert u["spec"]["authentication"] == {"type": "scram-sha-512"}
        assert u["spec"]["authorization"]["type"] == "simple"
        for acl in u["spec"]["authorization"]["acls"]:
            assert (acl["resource"]["patternType"], acl.get("type", "allow"), acl["host"]) == (
                "prefix", "allow", "*")
            who = name.removeprefix("evi-kafka-")
            got |= {(who, acl["resource"]["type"], acl["resource"]["name"], op)
                    for op in acl["operations"]}
    assert got == kafka_sh_acls() | KEDA_ACLS
