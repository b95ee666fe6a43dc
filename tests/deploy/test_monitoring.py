"""Dashboards, alert rules and scrape objects name metrics the services really export."""

from __future__ import annotations

import json
from typing import Any

import yaml
from prometheus_client import REGISTRY, CollectorRegistry

from producers.metrics import ProducerMetrics
from tests.deploy.kustomize import build
from tests.deploy.support import K8S, PROMQL_METRIC, REPO, Obj, of_kind, pod_spec

SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count"),
}


def exported(registry: CollectorRegistry) -> set[str]:
    names = set()
    for family in registry.collect():
        for suffix in SUFFIXES.get(family.type, ("",)):
            names.add(family.name + suffix)
    return {n for n in names if n.startswith("evi_")}


def known_metrics() -> set[str]:
    """Every evi_* series the gateway, processors and producers can export."""
    import gateway.app  # noqa: F401  (registers the gateway's metrics)
    import processors.metrics  # noqa: F401

    return exported(REGISTRY) | exported(ProducerMetrics().registry)


def test_known_metrics_cover_each_service() -> None:
    names = known_metrics()
    assert "evi_processor_frames_total" in names
    assert "evi_producer_frames_produced_total" in names
    assert "evi_gateway_kind_lag" in names
    assert "evi_processor_end_to_end_seconds_bucket" in names


def dashboard() -> Any:
    return json.loads((REPO / "deploy" / "grafana" / "dashboards" / "evi.json").read_text())


def test_dashboard_queries_name_real_metrics() -> None:
    known = known_metrics()
    dash = dashboard()
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    exprs.append(dash["templating"]["list"][0]["definition"])
    used = {m for e in exprs for m in PROMQL_METRIC.findall(e)}
    assert len(used) >= 10
    assert used - known == set(), f"not exported by any service: {sorted(used - known)}"


def test_dashboard_layout_is_sane() -> None:
    dash = dashboard()
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for p in dash["panels"]:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24, p["title"]
        if p["type"] != "row":
            assert p["targets"] and all(t["expr"] for t in p["targets"]), p["title"]
    assert dash["uid"] == "evi-overview"


def test_alert_rules_name_real_metrics() -> None:
    known = known_metrics()
    rules = yaml.safe_load((REPO / "deploy" / "prometheus" / "rules.yml").read_text())
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    used = {m for e in exprs for m in PROMQL_METRIC.findall(e)}
    assert used and used <= known, sorted(used - known)


def test_scrape_objects_select_real_pods_and_ports(rendered: dict[str, list[Obj]]) -> None:
    monitors = [m for m in build(K8S / "monitoring") if m["kind"] != "PrometheusRule"]
    objs = rendered["prod"]
    pods = [d for d in objs if d["kind"] == "Deployment"]
    for m in monitors:
        selector = m["spec"]["selector"]["matchLabels"]
        if m["kind"] == "ServiceMonitor":
            services = [s for s in of_kind(objs, "Service")
                        if selector.items() <= s["metadata"]["labels"].items()]
            assert len(services) == 1, m["metadata"]["name"]
            targets = {p["name"]: p["targetPort"] for p in services[0]["spec"]["ports"]}
            assert {e["port"] for e in m["spec"]["endpoints"]} <= set(targets)
            # Each endpoint reaches the pods' port that Prometheus is told to scrape.
            (pod,) = [d for d in pods if services[0]["spec"]["selector"].items()
                      <= d["spec"]["template"]["metadata"]["labels"].items()]
            numbers = {p["name"]: p["containerPort"]
                       for c in pod_spec(pod)["containers"] for p in c["ports"]}
            scraped = int(pod["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"])
            for e in m["spec"]["endpoints"]:
                assert numbers[targets[e["port"]]] == scraped, m["metadata"]["name"]
        else:
            assert m["kind"] == "PodMonitor"
            hits = [d for d in pods
                    if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()]
            assert hits, m["metadata"]["name"]
            for d in hits:
                ports = {p["name"] for c in pod_spec(d)["containers"] for p in c["ports"]}
                assert {e["port"] for e in m["spec"]["podMetricsEndpoints"]} <= ports
        for endpoint in m["spec"].get("endpoints", []) + m["spec"].get("podMetricsEndpoints", []):
            assert endpoint["path"] == "/metrics"


def test_plain_prometheus_job_uses_the_annotations_the_pods_carry(
    rendered: dict[str, list[Obj]],
) -> None:
    job = yaml.safe_load((REPO / "deploy" / "prometheus" / "kubernetes-scrape.yml").read_text())
    relabels = job["scrape_configs"][0]["relabel_configs"]
    used = {label for r in relabels for label in r["source_labels"]}
    for objs in rendered.values():
        for d in of_kind(objs, "Deployment"):
            annotations = d["spec"]["template"]["metadata"]["annotations"]
            for key in annotations:
                meta = "__meta_kubernetes_pod_annotation_" + key.replace(".", "_").replace("/", "_")
                assert meta in used, key
