"""The overlays' security: who may talk to whom (NetworkPolicies), bounded scratch space, which
Secrets each workload reads and which are required, Prometheus Operator wiring, exact images.

Policies are evaluated the way the API server's selectors are (matchLabels and
matchExpressions on the pods' template labels); named ports resolve against each pod's
container ports, as the CNI does.
"""

from __future__ import annotations

import re
import tomllib
from typing import Any
from urllib.parse import urlparse

import pytest

from tests.deploy.kustomize import build, split_image
from tests.deploy.support import (
    K8S,
    OVERLAYS,
    REPO,
    Obj,
    component,
    container_env,
    k8s_settings,
    named,
    of_kind,
    pod_spec,
    workloads,
)

KAFKA_USER = {"producer": "evi-kafka-producer", "processor": "evi-kafka-processor",
              "gateway": "evi-kafka-gateway", "topics": "evi-kafka-admin"}
TOKEN_SECRET = {"name": "evi-gateway-token", "key": "token"}
NS_LABEL = "kubernetes.io/metadata.name"
# The release name kube-prometheus-stack selects monitors by (docs/deploy.md).
RELEASE = "kube-prometheus-stack"


def selects(selector: Obj, labels: dict[str, str]) -> bool:
    """A LabelSelector against a label set; {} selects everything."""
    unknown = set(selector) - {"matchLabels", "matchExpressions"}
    assert not unknown, f"selector fields not modelled: {unknown}"
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        ok = {"In": key in labels and labels[key] in values,
              "NotIn": key not in labels or labels[key] not in values,
              "Exists": key in labels, "DoesNotExist": key not in labels}[op]
        if not ok:
            return False
    return True


def test_selects_follows_the_api_rules() -> None:
    labels = {"app": "evi", "component": "gateway"}
    assert selects({}, labels)
    assert selects({"matchLabels": {"app": "evi"}}, labels)
    assert not selects({"matchLabels": {"app": "evi", "component": "processor"}}, labels)
    expr = {"key": "component", "operator": "In", "values": ["processor", "gateway"]}
    assert selects({"matchExpressions": [expr]}, labels)
    assert not selects({"matchExpressions": [{**expr, "operator": "NotIn"}]}, labels)
    assert not selects({"matchExpressions": [{"key": "x", "operator": "Exists"}]}, labels)


def pod_labels(w: Obj) -> dict[str, str]:
    labels: dict[str, str] = w["spec"]["template"]["metadata"]["labels"]
    return labels


def policies_of(objs: list[Obj], w: Obj, direction: str) -> list[Obj]:
    """The NetworkPolicies that isolate workload w's pods in one direction."""
    return [p for p in of_kind(objs, "NetworkPolicy")
            if direction in p["spec"]["policyTypes"]
            and p["metadata"].get("namespace") == w["metadata"].get("namespace")
            and selects(p["spec"]["podSelector"], pod_labels(w))]


def rules_of(objs: list[Obj], w: Obj, direction: str) -> list[Obj]:
    key = direction.lower()
    return [r for p in policies_of(objs, w, direction) for r in p["spec"].get(key, [])]


def port_numbers(w: Obj, rule: Obj) -> set[tuple[str, int]]:
    """A rule's (protocol, port) pairs, named ports resolved on w's containers."""
    named_ports = {p["name"]: p["containerPort"] for c in pod_spec(w)["containers"]
                   for p in c.get("ports", [])}
    out = set()
    for p in rule["ports"]:
        port = p["port"]
        if isinstance(port, str):
            if port not in named_ports:
                continue  # a named port this pod does not have admits nothing here
            port = named_ports[port]
        out.add((p.get("protocol", "TCP"), port))
    return out


def is_prometheus(peer: Obj) -> bool:
    return (set(peer) == {"namespaceSelector", "podSelector"}
            and peer["namespaceSelector"] == {"matchLabels": {NS_LABEL: "monitoring"}}
            and peer["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "prometheus"}})


def is_dns(peer: Obj) -> bool:
    return (peer.get("namespaceSelector") == {"matchLabels": {NS_LABEL: "kube-system"}}
            and peer.get("podSelector") == {"matchLabels": {"k8s-app": "kube-dns"}})


def is_kafka(peer: Obj) -> bool:
    return peer.get("podSelector") == {"matchLabels": {"app.kubernetes.io/name": "kafka"}}


def metrics_port(w: Obj) -> int | None:
    annotations = w["spec"]["template"]["metadata"].get("annotations", {})
    port = annotations.get("prometheus.io/port")
    return int(port) if port else None


def test_every_emptydir_has_a_size_limit(rendered: dict[str, list[Obj]]) -> None:
    seen = 0
    for overlay, objs in rendered.items():
        for w in workloads(objs):
            for volume in pod_spec(w).get("volumes", []):
                if "emptyDir" in volume:
                    seen += 1
                    limit = (volume["emptyDir"] or {}).get("sizeLimit", "")
                    assert re.fullmatch(r"[1-9][0-9]*(Ki|Mi|Gi)", str(limit)), (
                        overlay, w["metadata"]["name"], volume["name"], limit)
    assert seen >= 8


def test_the_namespace_denies_everything_by_default(rendered: dict[str, list[Obj]]) -> None:
    for overlay, objs in rendered.items():
        deny = [p for p in of_kind(objs, "NetworkPolicy")
                if p["spec"]["podSelector"] == {} and not p["spec"].get("ingress")
                and not p["spec"].get("egress")]
        assert len(deny) == 1, overlay
        assert set(deny[0]["spec"]["policyTypes"]) == {"Ingress", "Egress"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_workload_is_selected_by_network_policies(rendered: dict[str, list[Obj]],
                                                        overlay: str) -> None:
    objs = rendered[overlay]
    for w in workloads(objs):
        name = w["metadata"]["name"]
        for direction in ("Ingress", "Egress"):
            assert policies_of(objs, w, direction), f"{overlay} {name}: no {direction} policy"
        # Not only the default deny: each one has its own allow rules (Kafka at least).
        allowing = [p for p in policies_of(objs, w, "Egress") if p["spec"].get("egress")]
        assert allowing, f"{overlay} {name}: cut off from Kafka"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_the_gateway_takes_connections(rendered: dict[str, list[Obj]],
                                            overlay: str) -> None:
    """Every other ingress rule is Prometheus (the monitoring namespace) on a metrics port."""
    objs = rendered[overlay]
    public: list[str] = []
    for w in workloads(objs):
        role, name = component(w), w["metadata"]["name"]
        scraped = False
        for rule in rules_of(objs, w, "Ingress"):
            assert rule.get("ports"), f"{overlay} {name}: an ingress rule on every port"
            ports = port_numbers(w, rule)
            if not ports:
                continue
            peers = rule.get("from", [])
            if peers and all(is_prometheus(p) for p in peers):
                assert ports == {("TCP", metrics_port(w))}, (overlay, name, ports)
                scraped = True
                continue
            public.append(name)
            assert role == "gateway", f"{overlay} {name} takes connections from {peers or 'all'}"
            served = k8s_settings(objs, w)["port"]
            assert ports == {("TCP", served)}, (overlay, name, ports)
        if metrics_port(w) is not None:
            assert scraped, f"{overlay} {name}: Prometheus cannot reach its metrics port"
    assert public == ["evi-gateway"]


def test_prod_gateway_is_reached_through_the_ingress_controller(
    rendered: dict[str, list[Obj]],
) -> None:
    objs = rendered["prod"]
    gateway = named(objs, "Deployment", "evi-gateway")
    peers = [p for r in rules_of(objs, gateway, "Ingress") for p in r.get("from", [{}])
             if not is_prometheus(p)]
    assert peers == [{"namespaceSelector": {"matchLabels": {NS_LABEL: "ingress-nginx"}}}]
    dev_gateway = named(rendered["dev"], "Deployment", "evi-gateway")
    assert [r for r in rules_of(rendered["dev"], dev_gateway, "Ingress") if "from" not in r]


def kafka_address(objs: list[Obj], w: Obj) -> tuple[str | None, set[int]]:
    """(namespace of the brokers or None for this one, ports) from the bootstrap servers."""
    (container,) = pod_spec(w)["containers"]
    servers = container_env(objs, container)["EVI_KAFKA__BOOTSTRAP_SERVERS"].split(",")
    namespaces, ports = set(), set()
    for server in servers:
        host, _, port = server.strip().rpartition(":")
        parts = host.split(".")
        namespaces.add(parts[1] if len(parts) > 1 and parts[2:3] == ["svc"] else None)
        ports.add(int(port))
    (namespace,) = namespaces
    return namespace, ports


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_egress_is_kafka_and_dns_only(rendered: dict[str, list[Obj]], overlay: str) -> None:
    objs = rendered[overlay]
    for w in workloads(objs):
        role, name = component(w), w["metadata"]["name"]
        namespace, kafka_ports = kafka_address(objs, w)
        reached = set()
        for rule in rules_of(objs, w, "Egress"):
            assert rule.get("to") and rule.get("ports"), f"{overlay} {name}: egress anywhere"
            ports = port_numbers(w, rule)
            for peer in rule["to"]:
                if is_dns(peer):
                    assert ports == {("UDP", 53), ("TCP", 53)}, (overlay, name)
                    reached.add("dns")
                elif is_kafka(peer):
                    assert ports == {("TCP", p) for p in kafka_ports}, (overlay, name, ports)
                    expected = ({"matchLabels": {NS_LABEL: namespace}} if namespace else None)
                    assert peer.get("namespaceSelector") == expected, (overlay, name, peer)
                    reached.add("kafka")
                else:
                    # Cameras are not pods: the producer reads them by address, in prod only.
                    assert (overlay, role) == ("prod", "producer"), (overlay, name, peer)
                    assert set(peer) == {"ipBlock"} and ports == {("TCP", 554)}
        assert reached == {"dns", "kafka"}, (overlay, name, reached)


def test_prometheus_is_where_the_scaled_objects_ask_it(rendered: dict[str, list[Obj]]) -> None:
    """The scrape policy's namespace is the one KEDA's prometheus triggers query."""
    objs = rendered["prod"]
    hosts = {urlparse(t["metadata"]["serverAddress"]).hostname
             for so in of_kind(objs, "ScaledObject") for t in so["spec"]["triggers"]
             if t["type"] == "prometheus"}
    assert hosts and {h.split(".")[1] for h in hosts} == {"monitoring"}


def test_prod_includes_the_monitors_with_the_release_label(
    rendered: dict[str, list[Obj]],
) -> None:
    monitors = {(m["kind"], m["metadata"]["name"]) for m in build(K8S / "monitoring")}
    kinds = {"ServiceMonitor", "PodMonitor", "PrometheusRule"}
    assert {kind for kind, _ in monitors} == kinds
    prod = [o for o in rendered["prod"] if o["kind"] in kinds]
    assert {(m["kind"], m["metadata"]["name"]) for m in prod} == monitors
    for m in prod:
        assert m["metadata"]["labels"]["release"] == RELEASE, m["metadata"]["name"]
        assert m["metadata"]["namespace"] == "evi"
    assert f"release: {RELEASE}" in (REPO / "docs" / "deploy.md").read_text()


def project_version() -> str:
    doc: Any = tomllib.loads((REPO / "pyproject.toml").read_text())
    version: str = doc["project"]["version"]
    return version


def test_every_image_is_an_exact_version(rendered: dict[str, list[Obj]]) -> None:
    for overlay, objs in rendered.items():
        for w in workloads(objs):
            for c in pod_spec(w)["containers"]:
                name, tag, digest = split_image(c["image"])
                # the gateway runs the Dockerfile's slim `gateway` target, the rest the full image
                ours = "evi-gateway" if w["metadata"]["name"].endswith("gateway") else "evi"
                assert name == ours, (overlay, c["image"])
                assert tag == project_version() or re.fullmatch(r"sha256:[0-9a-f]{64}", digest), (
                    f"{overlay}: {c['image']} is not the release {project_version()}")


def secret_refs(container: Obj) -> dict[str, Obj]:
    return {v["name"]: v["valueFrom"]["secretKeyRef"] for v in container.get("env", [])
            if "secretKeyRef" in v.get("valueFrom", {})}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_gateway_token_comes_from_its_required_secret(rendered: dict[str, list[Obj]],
                                                       overlay: str) -> None:
    objs = rendered[overlay]
    for w in workloads(objs):
        (container,) = pod_spec(w)["containers"]
        refs = secret_refs(container)
        if component(w) == "gateway":
            assert refs["EVI_AUTH_TOKEN"] == {**TOKEN_SECRET, "optional": False}
            assert k8s_settings(objs, w)["auth_token"] == "**********"  # set, and masked
        else:
            assert "EVI_AUTH_TOKEN" not in refs and "EVI_AUTH_TOKEN" not in container_env(
                objs, container), w["metadata"]["name"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_component_has_its_own_kafka_user(rendered: dict[str, list[Obj]],
                                               overlay: str) -> None:
    """Dev: PLAINTEXT, the Secrets optional. Prod: SASL_SSL with SCRAM-SHA-512, each
    component's Secret and the CA required (a pod without them does not start)."""
    objs = rendered[overlay]
    required = overlay == "prod"
    for w in workloads(objs):
        spec = pod_spec(w)
        (container,) = spec["containers"]
        refs = secret_refs(container)
        user = KAFKA_USER[component(w)]
        assert refs["EVI_KAFKA__SASL_USERNAME"] == {"name": user, "key": "username",
                                                     "optional": not required}
        assert refs["EVI_KAFKA__SASL_PASSWORD"] == {"name": user, "key": "password",
                                                     "optional": not required}
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert volumes["kafka-ca"]["secret"] == {"secretName": "evi-kafka-ca",
                                                 "optional": not required}
        mount = next(m for m in container["volumeMounts"] if m["name"] == "kafka-ca")
        env = container_env(objs, container)
        if required:
            assert env["EVI_KAFKA__SECURITY_PROTOCOL"] == "SASL_SSL"
            assert env["EVI_KAFKA__SASL_MECHANISM"] == "SCRAM-SHA-512"
            assert env["EVI_KAFKA__SSL_CAFILE"] == f"{mount['mountPath']}/ca.crt"
        else:
            assert env["EVI_KAFKA__SECURITY_PROTOCOL"] == "PLAINTEXT"
        if w["kind"] == "Deployment":
            kafka = k8s_settings(objs, w)["kafka"]
            assert kafka["security_protocol"] == env["EVI_KAFKA__SECURITY_PROTOCOL"]
            assert kafka["sasl_password"] == "**********"  # read from the Secret, masked


def test_keda_logs_in_as_its_own_user(rendered: dict[str, list[Obj]]) -> None:
    """Describe-only (docs/security.md): not the processors' user, which may read frames."""
    auth = named(rendered["prod"], "TriggerAuthentication", "evi-kafka")
    refs = {r["parameter"]: (r["name"], r["key"]) for r in auth["spec"]["secretTargetRef"]}
    ca_file = named(rendered["prod"], "ConfigMap", "evi-kafka")["data"]["EVI_KAFKA__SSL_CAFILE"]
    assert refs == {"username": ("evi-kafka-keda", "username"),
                    "password": ("evi-kafka-keda", "password"),
                    "ca": ("evi-kafka-ca", ca_file.rsplit("/", 1)[1])}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_gateway_believes_forwarded_headers_only_behind_its_proxy(
    rendered: dict[str, list[Obj]], overlay: str,
) -> None:
    """X-Forwarded-For from anyone ("*") only where the policy lets nothing but the Ingress
    controller (and Prometheus) reach the gateway; otherwise a client could pick its address."""
    objs = rendered[overlay]
    gateway = named(objs, "Deployment", "evi-gateway")
    trusted = k8s_settings(objs, gateway)["forwarded_allow_ips"]
    open_to_all = any(not r.get("from") for r in rules_of(objs, gateway, "Ingress"))
    if "*" in trusted:
        assert not open_to_all, f"{overlay}: anyone reaching the gateway may forge its address"
    assert ("*" in trusted) == (overlay == "prod")
