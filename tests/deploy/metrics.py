"""Every evi_* metric the code defines, read from the registries after importing every module
of the four packages (a metric defined anywhere registers at import, or in a producer's own
registry), with its type and label names."""

from __future__ import annotations

import functools
import importlib
import pkgutil
import re
from dataclasses import dataclass
from types import ModuleType

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase

from producers.metrics import ProducerMetrics
from tests.deploy.support import REPO

PACKAGES = ("evi", "producers", "processors", "gateway")
# The series a family exports, by type (counters are named here by their `_total` series).
SERIES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("", "_sum", "_count"),
}
# A metric's name as written at its definition, to catch one in a registry nobody reads here.
DEFINED = re.compile(r"\b(?:Counter|Gauge|Histogram|Summary|Info|Enum)\(\s*\"(evi_[a-z0-9_]+)\"")


@dataclass(frozen=True)
class Metric:
    name: str  # as documented: counters with `_total`
    type: str
    labels: tuple[str, ...]


def _modules() -> list[ModuleType]:
    out = []
    for name in PACKAGES:
        pkg = importlib.import_module(name)
        out.append(pkg)
        for m in pkgutil.walk_packages(pkg.__path__, name + "."):
            if not m.name.endswith("__main__"):
                out.append(importlib.import_module(m.name))
    return out


def _labels(wrappers: list[MetricWrapperBase]) -> dict[str, tuple[str, ...]]:
    # prometheus_client keeps label names only on the wrapper (`_labelnames`, stable since
    # 0.4); a family without children has no samples to read them from.
    return {w._name: tuple(w._labelnames) for w in wrappers}


@functools.cache
def code_metrics() -> dict[str, Metric]:
    """name -> Metric for every evi_* metric the services can export."""
    modules = _modules()
    producer = ProducerMetrics()
    wrappers = [v for m in modules for v in vars(m).values() if isinstance(v, MetricWrapperBase)]
    wrappers += [v for v in vars(producer).values() if isinstance(v, MetricWrapperBase)]
    labels = _labels(wrappers)
    out: dict[str, Metric] = {}
    registry: CollectorRegistry
    for registry in (REGISTRY, producer.registry):
        for family in registry.collect():
            if not family.name.startswith("evi_"):
                continue
            name = family.name + ("_total" if family.type == "counter" else "")
            assert family.name in labels, f"{family.name}: defined where this cannot see it"
            out[name] = Metric(name, family.type, labels[family.name])
    return out


def defined_in_source() -> set[str]:
    """Names at a Counter(…)/Gauge(…)/… call in the packages' source, `_total` stripped."""
    found = set()
    for pkg in PACKAGES:
        for path in (REPO / pkg).rglob("*.py"):
            found |= {n.removesuffix("_total") for n in DEFINED.findall(path.read_text())}
    return found


def series(m: Metric) -> set[str]:
    base = m.name.removesuffix("_total") if m.type == "counter" else m.name
    return {base + s for s in SERIES[m.type]}
