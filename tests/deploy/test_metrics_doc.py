"""docs/metrics.md lists every metric the code registers, with its type and labels, and no
other: a metric added, renamed, retyped or relabelled without the doc fails here."""

from __future__ import annotations

import re

from tests.deploy.metrics import Metric, code_metrics, defined_in_source
from tests.deploy.support import REPO

DOC = REPO / "docs" / "metrics.md"
ROW = re.compile(r"^\| `(evi_[a-z0-9_]+)` \| (\w+) \|\s*([a-z_, ]*?)\s*\| (.+) \|$")
SECTIONS = {"processor": "## Processor", "gateway": "## Gateway", "producer": "## Producer"}


def documented() -> dict[str, tuple[Metric, str]]:
    """name -> (Metric, the section heading it is under)."""
    out: dict[str, tuple[Metric, str]] = {}
    section = ""
    for line in DOC.read_text().splitlines():
        if line.startswith("## "):
            section = line
        hit = ROW.match(line)
        if hit:
            name, kind, labels, meaning = hit.groups()
            assert name not in out, f"{name} listed twice"
            assert meaning.strip(), name
            out[name] = (Metric(name, kind, tuple(x.strip() for x in labels.split(",")
                                                  if x.strip())), section)
    return out


def test_code_metrics_come_from_every_service() -> None:
    names = set(code_metrics())
    for service in SECTIONS:
        assert len({n for n in names if n.startswith(f"evi_{service}_")}) >= 10, service
    # Every definition in the source was seen in a registry (none hides from this test).
    assert defined_in_source() == {n.removesuffix("_total") for n in names}


def test_every_metric_is_documented_with_its_type_and_labels() -> None:
    code, doc = code_metrics(), documented()
    assert sorted(set(code) - set(doc)) == [], "missing from docs/metrics.md"
    assert sorted(set(doc) - set(code)) == [], "in docs/metrics.md but not in the code"
    wrong = {n: (doc[n][0], m) for n, m in code.items() if doc[n][0] != m}
    assert wrong == {}, "type or labels differ (documented, code)"


def test_each_metric_is_under_its_service() -> None:
    for name, (_, section) in documented().items():
        service = name.split("_")[1]
        assert section.startswith(SECTIONS[service]), (name, section)


def test_the_doc_parser_sees_a_changed_row() -> None:
    """The row pattern must not silently skip a row it cannot read."""
    rows = [line for line in DOC.read_text().splitlines() if line.startswith("| `evi_")]
    assert len(rows) == len(documented()) == len(code_metrics())
