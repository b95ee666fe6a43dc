"""The renderer the other tests trust: it must do what kustomize does, or refuse."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.deploy.kustomize import KustomizeError, build, split_image

DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "w"},
    "spec": {"template": {"spec": {"containers": [
        {"name": "a", "image": "evi", "env": [{"name": "X", "value": "1"}],
         "args": ["one", "two"]},
        {"name": "b", "image": "other:1"},
    ]}}},
}


def write(root: Path, files: dict[str, object]) -> Path:
    for name, doc in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(doc) if not isinstance(doc, str) else doc)
    return root


def test_strategic_merge_merges_keyed_lists_and_replaces_scalar_lists(tmp_path: Path) -> None:
    patch = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "w"},
             "spec": {"template": {"spec": {"containers": [
                 {"name": "a", "env": [{"name": "Y", "value": "2"}, {"name": "X", "value": "3"}],
                  "args": ["three"]}]}}}}
    kustomization = {"resources": ["w.yaml"], "patches": [{"path": "p.yaml"}], "namespace": "ns",
                     "images": [{"name": "evi", "newTag": "7"}]}
    write(tmp_path, {"kustomization.yaml": kustomization, "w.yaml": DEPLOYMENT, "p.yaml": patch})
    (w,) = build(tmp_path)
    a, b = w["spec"]["template"]["spec"]["containers"]
    assert a["env"] == [{"name": "X", "value": "3"}, {"name": "Y", "value": "2"}]
    assert a["args"] == ["three"]
    assert a["image"] == "evi:7"
    assert b["image"] == "other:1"
    assert w["metadata"]["namespace"] == "ns"


def test_json6902_add_replace_remove_and_append(tmp_path: Path) -> None:
    so = {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": {"name": "s"},
          "spec": {"minReplicaCount": 1, "triggers": [{"type": "kafka", "metadata": {"a": "1"}}]}}
    ops = [{"op": "replace", "path": "/spec/minReplicaCount", "value": 2},
           {"op": "add", "path": "/spec/triggers/-", "value": {"type": "cpu"}},
           {"op": "add", "path": "/spec/triggers/0/metadata/b", "value": "2"},
           {"op": "remove", "path": "/spec/triggers/0/metadata/a"}]
    write(tmp_path, {"kustomization.yaml": {"resources": ["s.yaml"], "patches": [
        {"path": "p.yaml", "target": {"kind": "ScaledObject", "name": "s"}}]},
        "s.yaml": so, "p.yaml": ops})
    (s,) = build(tmp_path)
    assert s["spec"] == {"minReplicaCount": 2,
                         "triggers": [{"type": "kafka", "metadata": {"b": "2"}}, {"type": "cpu"}]}


def test_refuses_what_it_does_not_model(tmp_path: Path) -> None:
    so = {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": {"name": "s"},
          "spec": {"triggers": [{"type": "kafka"}]}}
    patch = {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": {"name": "s"},
             "spec": {"triggers": [{"type": "cpu"}]}}
    write(tmp_path / "a", {"kustomization.yaml": {"resources": ["s.yaml"],
                                                  "patches": [{"path": "p.yaml"}]},
                           "s.yaml": so, "p.yaml": patch})
    with pytest.raises(KustomizeError, match="RFC 6902"):
        build(tmp_path / "a")
    write(tmp_path / "b", {"kustomization.yaml": {"resources": ["s.yaml"], "namePrefix": "x-"},
                           "s.yaml": so})
    with pytest.raises(KustomizeError, match="namePrefix"):
        build(tmp_path / "b")
    write(tmp_path / "c", {"kustomization.yaml": {"resources": ["s.yaml", "s.yaml"]},
                           "s.yaml": so})
    with pytest.raises(KustomizeError, match="twice"):
        build(tmp_path / "c")
    write(tmp_path / "d", {"kustomization.yaml": {"resources": ["s.yaml"],
                                                  "patches": [{"path": "p.yaml"}]},
                           "s.yaml": so, "p.yaml": {**patch, "metadata": {"name": "other"}}})
    with pytest.raises(KustomizeError, match="no object"):
        build(tmp_path / "d")


@pytest.mark.parametrize(("image", "parts"), [
    ("evi", ("evi", "", "")),
    ("evi:dev", ("evi", "dev", "")),
    ("host:5000/team/evi:1.2", ("host:5000/team/evi", "1.2", "")),
    ("evi@sha256:abc", ("evi", "", "sha256:abc")),
])
def test_split_image(image: str, parts: tuple[str, str, str]) -> None:
    assert split_image(image) == parts


def test_null_deletes_a_field_and_patch_delete_drops_the_object(tmp_path: Path) -> None:
    other = {**DEPLOYMENT, "metadata": {"name": "v"}}
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"}, "spec": {}}
    # One patch for every Deployment: kustomize gives it each target's name.
    env = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "any"},
           "spec": {"template": {"spec": {"containers": [
               {"name": "a", "env": [{"name": "X", "value": None,
                                      "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}}]}
           ]}}}}
    drop = {"$patch": "delete", "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"}}
    write(tmp_path, {"kustomization.yaml": {
        "resources": ["w.yaml", "v.yaml", "j.yaml"],
        "patches": [{"path": "env.yaml", "target": {"kind": "Deployment"}}, {"path": "drop.yaml"}]},
        "w.yaml": DEPLOYMENT, "v.yaml": other, "j.yaml": job, "env.yaml": env, "drop.yaml": drop})
    objs = build(tmp_path)
    assert [(o["kind"], o["metadata"]["name"]) for o in objs] == [
        ("Deployment", "w"), ("Deployment", "v")]
    for o in objs:
        assert o["spec"]["template"]["spec"]["containers"][0]["env"] == [
            {"name": "X", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}}]
