"""deploy/generate.py: the committed deploy files are exactly what it writes from the models
catalog, every served consumer group has its Deployment and ScaledObject, and a catalog that
gains an INT8 twin or a kind gets their groups wired everywhere (k8s and compose) without a
hand edit — checked with the same KEDA, schema and settings checks as the committed groups."""

from __future__ import annotations

import dataclasses
import re
import shutil
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

import deploy.generate as gen
from evi.settings import TopicSettings
from evi.topics import Topics
from processors.models import BlazeFaceConfig, ModelCatalog, SsdConfig
from tests.deploy import test_keda
from tests.deploy.kustomize import build
from tests.deploy.support import K8S, Obj, component, k8s_settings, of_kind
from tests.deploy.test_k8s_schemas import K8S_VERSION, keda_schemas

TARGETS = {"dev": gen.DEV, "prod": gen.PROD}


def test_committed_deploy_files_are_what_the_generator_writes() -> None:
    stale = [str(p.relative_to(gen.REPO)) for p, text in gen.generated_files().items()
             if not p.exists() or p.read_text(encoding="utf-8") != text]
    assert stale == [], f"run `make deploy-files`: {stale} differ from deploy/generate.py's output"


def test_the_check_mode_names_a_stale_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    compose = tmp_path / "docker-compose.yml"
    compose.write_text(gen.COMPOSE.read_text().replace('"--kind", "face"]', '"--kind", "x"]', 1))
    monkeypatch.setattr(gen, "COMPOSE", compose)
    monkeypatch.setattr(gen, "k8s_files", lambda: {})
    assert gen.main(["--check"]) == 1
    assert "docker-compose.yml" in capsys.readouterr().out
    assert gen.main([]) == 0  # writes it
    assert gen.main(["--check"]) == 0


def served_groups(objs: list[Obj]) -> set[tuple[str, str]]:
    return {(so["spec"]["triggers"][0]["metadata"]["consumerGroup"],
             so["spec"]["scaleTargetRef"]["name"]) for so in of_kind(objs, "ScaledObject")}


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_every_served_group_has_its_deployment_and_scaled_object(
    overlay: str, rendered: dict[str, list[Obj]]
) -> None:
    groups = gen.served(TARGETS[overlay].catalog(), TARGETS[overlay].kinds)
    assert served_groups(rendered[overlay]) == {(g.group_id, g.name) for g in groups}
    processors = sorted(d["metadata"]["name"] for d in of_kind(rendered[overlay], "Deployment")
                        if component(d) == "processor")
    assert processors == sorted(g.name for g in groups)


def test_processor_selectors_never_overlap(rendered: dict[str, list[Obj]]) -> None:
    """FP32 and INT8 of a kind are two Deployments: each selects only its own pods."""
    for overlay, objs in rendered.items():
        deps = [d for d in of_kind(objs, "Deployment") if component(d) == "processor"]
        for a in deps:
            sel = a["spec"]["selector"]["matchLabels"].items()
            for b in deps:
                labels = b["spec"]["template"]["metadata"]["labels"]
                assert (a is b) == (sel <= labels.items()), (overlay, a["metadata"]["name"],
                                                             b["metadata"]["name"])


def with_twins() -> ModelCatalog:
    """What the int8 and person branches add: an INT8 twin of the face default, a person kind
    with its own twin (placeholder entries: only names and families matter here)."""
    short, full = (BlazeFaceConfig(name=f"blazeface-{v}", variant=v) for v in ("short", "full"))
    twins = [BlazeFaceConfig(name=f"blazeface-{v}-int8", variant=v) for v in ("short", "full")]
    person = [SsdConfig(name="pose", path=Path("pose/pose.xml")),
              SsdConfig(name="pose-int8", path=Path("pose/pose-int8.xml"))]
    return ModelCatalog({"face": [short, full, *twins], "person": person})


def test_served_takes_each_default_and_its_int8_twin_only() -> None:
    """Not blazeface-full nor its twin: a kind's other models serve only when asked for."""
    groups = gen.served(with_twins())
    assert [(g.kind, g.model, g.default) for g in groups] == [
        ("face", "blazeface-short", True), ("face", "blazeface-short-int8", False),
        ("person", "pose", True), ("person", "pose-int8", False)]
    assert [g.group_id for g in groups] == [
        "evi-processor-face", "evi-processor-face-blazeface-short-int8",
        "evi-processor-person", "evi-processor-person-pose-int8"]
    assert groups[1].args == ["process", "--kind", "face", "--model", "blazeface-short-int8"]


@pytest.fixture
def twins_in_dev(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Obj]:
    """The dev overlay generated (into a copy of deploy/k8s) from the catalog with twins."""
    k8s = tmp_path / "k8s"
    shutil.copytree(K8S, k8s)
    monkeypatch.setattr(gen, "K8S", k8s)
    monkeypatch.setattr(gen, "DEV", dataclasses.replace(gen.DEV, catalog=with_twins))
    for path, text in gen.k8s_files().items():
        path.write_text(text, encoding="utf-8")
    return build(k8s / "overlays" / "dev")


def test_new_groups_pass_every_check_the_committed_ones_do(
    twins_in_dev: list[Obj], tmp_path: Path
) -> None:
    objs = twins_in_dev
    assert served_groups(objs) == {(g.group_id, g.name) for g in gen.served(with_twins())}
    topics_job = next(o for o in objs if o["kind"] == "Job")
    assert topics_job["spec"]["template"]["spec"]["containers"][0]["args"] == [
        "kafka", "topics", "--kind", "face", "--kind", "person"]
    for so in of_kind(objs, "ScaledObject"):
        name = so["metadata"]["name"]
        schema = keda_schemas()["keda.sh/v1alpha1/ScaledObject"]
        jsonschema.Draft202012Validator(schema).validate(so)
        scaling = test_keda.Scaling({"dev": objs}, "dev", name)
        test_keda.test_topic_and_group_are_the_processors_own(scaling)
        test_keda.test_lag_threshold_sits_well_above_the_lag_of_a_busy_replica(scaling)
        test_keda.test_scale_events_pay_for_themselves(scaling)
        test_keda.test_models_use_the_cpus_they_get(scaling, tmp_path)
        test_keda.test_a_group_that_keeps_up_never_scales_out_on_its_lag(scaling)
    for dep in of_kind(objs, "Deployment") + of_kind(objs, "PodDisruptionBudget"):
        kubernetes_validate.validate(dep, K8S_VERSION, strict=True)
    int8 = next(d for d in of_kind(objs, "Deployment")
                if d["metadata"]["name"] == "evi-processor-face-blazeface-short-int8")
    settings = k8s_settings(objs, int8)
    assert (settings["kind"], settings["model"]) == ("face", "blazeface-short-int8")
    assert Topics(TopicSettings(**settings["topics"])).group("face", settings["model"]) == \
        "evi-processor-face-blazeface-short-int8"


def test_compose_gets_a_service_per_group_and_every_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gen, "default_models", with_twins)
    services = yaml.safe_load(gen.compose_file())["services"]
    procs = {name: s["command"] for name, s in services.items() if name.startswith("processor-")}
    assert procs == {
        "processor-face": ["process", "--kind", "face"],
        "processor-face-blazeface-short-int8":
            ["process", "--kind", "face", "--model", "blazeface-short-int8"],
        "processor-person": ["process", "--kind", "person"],
        "processor-person-pose-int8": ["process", "--kind", "person", "--model", "pose-int8"],
    }
    assert services["topics"]["command"] == ["kafka", "topics", "--kind", "face", "--kind",
                                             "person"]
    produce = services["producer"]["command"]
    assert [produce[i + 1] for i, a in enumerate(produce) if a == "--kind"] == ["face", "person"]


def test_prometheus_triggers_select_their_own_group(rendered: dict[str, list[Obj]]) -> None:
    """The seconds-behind gauge carries kind and model, and each group's query names both, so
    an INT8 group is never scaled on its FP32 twin's workers."""
    import processors.metrics

    assert processors.metrics.SECONDS_BEHIND._labelnames == ("kind", "model")
    seen = 0
    for so in of_kind(rendered["prod"], "ScaledObject"):
        (trigger,) = [t for t in so["spec"]["triggers"] if t["type"] == "prometheus"]
        labels = dict(re.findall(r'(\w+)="([^"]*)"', trigger["metadata"]["query"]))
        target = next(d for d in of_kind(rendered["prod"], "Deployment")
                      if d["metadata"]["name"] == so["spec"]["scaleTargetRef"]["name"])
        settings = k8s_settings(rendered["prod"], target)
        assert (labels["kind"], labels["model"]) == (settings["kind"], settings["model"] or
                                                     so["metadata"]["labels"]["evi/model"])
        assert labels["model"] == so["metadata"]["labels"]["evi/model"]
        seen += 1
    assert seen == 3
