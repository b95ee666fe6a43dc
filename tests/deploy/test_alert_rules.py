"""The alert rules: the alerts operators need, each with a severity, a summary and a runbook
section that exists; expressions that name only metrics some service exports (or `up`, named
here on purpose); the compose file and the PrometheusRule carry the same rules."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.kustomize import build
from tests.deploy.metrics import code_metrics, series
from tests.deploy.support import K8S, REPO, Obj

RULECHECK = Path(__file__).parent / "rulecheck"
RULES = REPO / "deploy" / "prometheus" / "rules.yml"
RUNBOOKS = REPO / "docs" / "runbooks.md"
# Alerts operators asked for: a stalled processor, results behind, a target down, producer
# delivery errors; and the ones the dashboard's banners mirror.
REQUIRED = {"EviProcessorStalled", "EviSecondsBehind", "EviTargetDown",
            "EviProducerDeliveryErrors", "EviKafkaUnreachable", "EviKindBacklog",
            "EviKindWithoutWorkers", "EviDeadLetters"}
# Metrics no evi service exports, allowed by name: Prometheus' own per-target series.
EXTERNAL = {"up"}
DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or",
            "unless", "offset", "bool"}


def rules_file() -> Any:
    return yaml.safe_load(RULES.read_text())


def alerts() -> list[Obj]:
    return [r for g in rules_file()["groups"] for r in g["rules"]]


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: identifiers that are not a function
    (followed by `(`), a keyword, or inside a label matcher, a range, a string or a
    `by (…)`-style label list."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    e = re.sub(r"\{[^}]*\}", " ", e)
    e = re.sub(r"\[[^\]]*\]", " ", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    names = set()
    for m in re.finditer(r"(?<![\w.])[A-Za-z_:][A-Za-z0-9_:]*", e):
        if e[m.end():].lstrip().startswith("(") or m.group() in KEYWORDS:
            continue
        names.add(m.group())
    return names


def github_anchors(markdown: str) -> set[str]:
    """The ids GitHub gives headings: lower case, punctuation but `-` and `_` dropped, spaces
    to `-`."""
    out = set()
    for line in markdown.splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            out.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return out


def test_every_needed_alert_is_there_once_and_complete() -> None:
    names = [r["alert"] for r in alerts()]
    assert len(names) == len(set(names))
    assert set(names) >= REQUIRED, sorted(REQUIRED - set(names))
    for r in alerts():
        assert set(r) == {"alert", "expr", "for", "labels", "annotations"}, r["alert"]
        assert DURATION.match(r["for"]), r["alert"]
        assert r["labels"]["severity"] in ("warning", "critical"), r["alert"]
        assert set(r["annotations"]) == {"summary", "runbook_url"}, r["alert"]


def test_each_runbook_url_lands_on_its_own_section() -> None:
    anchors = github_anchors(RUNBOOKS.read_text())
    targets = []
    for r in alerts():
        path, _, anchor = r["annotations"]["runbook_url"].partition("#")
        assert path == "docs/runbooks.md", r["alert"]
        assert anchor == r["alert"].lower(), r["alert"]
        assert anchor in anchors, f"{r['alert']}: no section #{anchor} in docs/runbooks.md"
        targets.append(anchor)
    # No runbook section without its alert either (a renamed alert leaves none behind).
    sections = {a for a in anchors if a.startswith("evi")}
    assert sections == set(targets)


def test_expressions_name_only_exported_metrics() -> None:
    exported = {s for m in code_metrics().values() for s in series(m)}
    for r in alerts():
        used = metric_names(r["expr"])
        assert used, r["alert"]
        assert used <= exported | EXTERNAL, (r["alert"], sorted(used - exported - EXTERNAL))


def test_the_metric_name_reader_reads_promql() -> None:
    assert metric_names(
        'sum by (kind, le) (rate(evi_a_bucket{job=~"x|y", kind!="z"}[5m] offset 1m)) > 0.1'
        ' and on(kind) group_left(model) max without (pod) (evi_b) unless up == 0'
    ) == {"evi_a_bucket", "evi_b", "up"}
    assert metric_names("histogram_quantile(0.95, evi_c_bucket) > bool 2") == {"evi_c_bucket"}


def test_compose_and_the_operator_run_the_same_rules(rendered: dict[str, list[Obj]]) -> None:
    config = yaml.safe_load((REPO / "deploy" / "prometheus" / "prometheus.yml").read_text())
    assert config["rule_files"] == ["/etc/prometheus/rules.yml"]
    (rule,) = [o for o in build(K8S / "monitoring") if o["kind"] == "PrometheusRule"]
    assert rule["spec"] == rules_file()
    # prod selects it the way kube-prometheus-stack's ruleSelector does, like the monitors.
    (prod,) = [o for o in rendered["prod"] if o["kind"] == "PrometheusRule"]
    monitors = [o for o in rendered["prod"] if o["kind"] in ("ServiceMonitor", "PodMonitor")]
    assert prod["metadata"]["labels"]["release"] == monitors[0]["metadata"]["labels"]["release"]
    assert prod["metadata"]["namespace"] == monitors[0]["metadata"]["namespace"]


@pytest.fixture(scope="module")
def rulecheck(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/deploy/rulecheck built: Prometheus' rulefmt, what `promtool check rules` runs
    (promtool itself would build all of Prometheus; ~2 min cold, seconds once cached)."""
    go = shutil.which("go") or next(
        (str(p) for p in (Path("/usr/local/go/bin/go"),) if p.is_file()), None)
    if go is None:
        pytest.fail("no `go` on PATH: the alert rules are checked by Prometheus' own parser, "
                    "built from tests/deploy/rulecheck (Go 1.24+)")
    out = tmp_path_factory.mktemp("rulecheck") / "rulecheck"
    subprocess.run([go, "build", "-o", str(out), "."], cwd=RULECHECK, check=True, timeout=600)
    return out


def check(tool: Path, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(tool), str(path)], capture_output=True, text=True, timeout=60,
                          check=False)


def test_prometheus_parses_the_rules_and_refuses_a_broken_one(
    rulecheck: Path, tmp_path: Path
) -> None:
    ok = check(rulecheck, RULES)
    assert (ok.returncode, ok.stdout) == (0, "")
    broken = rules_file()
    broken["groups"][0]["rules"][0]["expr"] = "sum by (kind) (evi_gateway_kind_lag"
    broken["groups"][0]["rules"][1]["annotations"]["summary"] = "{{ $labels.kind "
    bad = tmp_path / "bad.yml"
    bad.write_text(yaml.safe_dump(broken))
    got = check(rulecheck, bad)
    assert got.returncode == 1
    assert "could not parse expression" in got.stdout and "EviKafkaUnreachable" in got.stdout
    assert "template" in got.stdout and "EviKindBacklog" in got.stdout
