"""A small, strict kustomize renderer for the features deploy/k8s uses, and nothing else.

There is no kustomize binary here (nor a pip/npm package that runs the real one), so the tests
render the overlays with this. It is exact for what it accepts and refuses the rest, so a
kustomization that grows a feature it does not model fails loudly instead of rendering wrong:

- `resources`: files (multi-document YAML) and directories holding a kustomization.yaml; each
  directory is rendered on its own first, as kustomize does.
- `namespace`: set on every namespaced object (Namespace objects must already carry that name,
  so kustomize's treatment of them cannot differ).
- `patches`: a strategic-merge patch (one document; target from its kind/name, or `target`;
  a null value deletes the field and `$patch: delete` the whole object, as in kustomize), or
  an RFC 6902 list of `add`/`replace`/`remove` operations with a `target`. Strategic merge on
  lists is modelled only for the built-in list fields with a merge key below; any other list in
  an SMP patch is refused (kustomize's merge keys for CRD lists are inferred: use RFC 6902).
- `images`: `name` with `newName`/`newTag`/`digest`, on every `containers`/`initContainers`.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

Obj = dict[str, Any]

KNOWN_FIELDS = {"apiVersion", "kind", "resources", "namespace", "patches", "images"}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
                  "PersistentVolume", "StorageClass", "IngressClass", "PriorityClass"}
# Strategic-merge list fields of the built-in kinds (k8s `patchMergeKey`) that the patches use.
MERGE_KEYS = {"containers": "name", "initContainers": "name", "env": "name",
              "volumes": "name", "volumeMounts": "mountPath"}
BUILTIN_GROUPS = {"v1", "apps/v1", "batch/v1", "policy/v1", "networking.k8s.io/v1"}


class KustomizeError(Exception):
    pass


def load_docs(path: Path) -> list[Obj]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    for d in docs:
        if not isinstance(d, dict):
            raise KustomizeError(f"{path}: a document is not a mapping")
    return docs


def build(directory: Path) -> list[Obj]:
    """The objects `kustomize build directory` prints, in resource order."""
    kfile = directory / "kustomization.yaml"
    if not kfile.is_file():
        raise KustomizeError(f"{directory}: no kustomization.yaml")
    k = yaml.safe_load(kfile.read_text())
    unknown = set(k) - KNOWN_FIELDS
    if unknown:
        raise KustomizeError(f"{kfile}: fields this renderer does not model: {sorted(unknown)}")
    objs: list[Obj] = []
    for entry in k.get("resources", []):
        path = (directory / entry).resolve()
        objs += build(path) if path.is_dir() else load_docs(path)
    seen: set[tuple[str, str, str]] = set()
    for patch in k.get("patches", []):
        apply_patch(objs, directory, patch)
    if "namespace" in k:
        set_namespace(objs, k["namespace"])
    for image in k.get("images", []):
        set_image(objs, image)
    for o in objs:
        ident = (o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"])
        if ident in seen:
            raise KustomizeError(f"{directory}: {ident} is defined twice")
        seen.add(ident)
    return objs


def set_namespace(objs: list[Obj], namespace: str) -> None:
    for o in objs:
        if o["kind"] == "Namespace":
            if o["metadata"]["name"] != namespace:
                raise KustomizeError(f"Namespace {o['metadata']['name']} != namespace {namespace}")
        elif o["kind"] not in CLUSTER_SCOPED:
            o["metadata"]["namespace"] = namespace


def matches(o: Obj, target: Obj) -> bool:
    unknown = set(target) - {"kind", "name"}
    if unknown:
        raise KustomizeError(f"patch target fields not modelled: {sorted(unknown)}")
    return all(
        (o["kind"] if key == "kind" else o["metadata"]["name"]) == value
        for key, value in target.items()
    )


def apply_patch(objs: list[Obj], directory: Path, patch: Obj) -> None:
    if set(patch) - {"path", "target"}:
        raise KustomizeError(f"patch fields not modelled: {sorted(set(patch))}")
    docs = list(yaml.safe_load_all((directory / patch["path"]).read_text()))
    if len(docs) != 1:
        raise KustomizeError(f"{patch['path']}: one patch per file")
    body = docs[0]
    if isinstance(body, list):
        if "target" not in patch:
            raise KustomizeError(f"{patch['path']}: an RFC 6902 patch needs a target")
        targets = [o for o in objs if matches(o, patch["target"])]
    else:
        target = patch.get("target") or {"kind": body["kind"], "name": body["metadata"]["name"]}
        targets = [o for o in objs if matches(o, target)]
    if not targets:
        raise KustomizeError(f"{patch['path']}: no object matches its target")
    if isinstance(body, dict) and body.get("$patch") == "delete":
        objs[:] = [o for o in objs if all(o is not t for t in targets)]
        return
    for o in targets:
        if isinstance(body, list):
            json6902(o, body, patch["path"])
        else:
            builtin = o["apiVersion"] in BUILTIN_GROUPS
            change = {k: v for k, v in body.items() if k not in ("apiVersion", "kind")}
            if "target" in patch and "name" in change.get("metadata", {}):
                # kustomize gives the patch each target's name before merging it.
                change["metadata"] = {**change["metadata"], "name": o["metadata"]["name"]}
            smp(o, change, builtin)


def smp(base: Obj, patch: Obj, builtin: bool, field: str = "") -> None:
    """Strategic merge: maps merge, scalars replace, keyed lists merge item by item."""
    for key, value in patch.items():
        if value is None:  # SMP's way to delete a field
            base.pop(key, None)
        elif isinstance(value, dict) and isinstance(base.get(key), dict):
            smp(base[key], value, builtin, key)
        elif isinstance(value, list) and any(isinstance(v, dict) for v in value):
            if not builtin or key not in MERGE_KEYS:
                raise KustomizeError(f"SMP list {field}.{key} is not modelled: use RFC 6902")
            merge_key = MERGE_KEYS[key]
            items = base.setdefault(key, [])
            for item in value:
                hit = [b for b in items if b.get(merge_key) == item[merge_key]]
                if hit:
                    smp(hit[0], item, builtin, key)
                else:
                    items.append(copy.deepcopy(item))
        else:
            base[key] = copy.deepcopy(value)  # scalars and lists of scalars replace


def _walk(doc: Any, parts: list[str], path: str) -> Any:
    for part in parts:
        if isinstance(doc, list):
            doc = doc[int(part)]
        elif isinstance(doc, dict) and part in doc:
            doc = doc[part]
        else:
            raise KustomizeError(f"JSON patch path {path}: {part!r} does not exist")
    return doc


def json6902(o: Obj, ops: list[Obj], where: str) -> None:
    for op in ops:
        path = op["path"]
        parts = [p.replace("~1", "/").replace("~0", "~") for p in path.split("/")[1:]]
        parent = _walk(o, parts[:-1], path)
        last = parts[-1]
        kind = op["op"]
        if kind not in ("add", "replace", "remove"):
            raise KustomizeError(f"{where}: op {kind} is not modelled")
        if isinstance(parent, list):
            if kind == "add":
                parent.insert(len(parent) if last == "-" else int(last), op["value"])
            elif kind == "replace":
                parent[int(last)] = op["value"]
            else:
                del parent[int(last)]
        else:
            if kind in ("replace", "remove") and last not in parent:
                raise KustomizeError(f"{where}: {path} does not exist for {kind}")
            if kind == "remove":
                del parent[last]
            else:
                parent[last] = copy.deepcopy(op["value"])


def _images(doc: Any) -> list[Obj]:
    """Every container (and init container) anywhere in an object."""
    found: list[Obj] = []
    if isinstance(doc, dict):
        for key, value in doc.items():
            if key in ("containers", "initContainers") and isinstance(value, list):
                found += [c for c in value if isinstance(c, dict)]
            else:
                found += _images(value)
    elif isinstance(doc, list):
        for item in doc:
            found += _images(item)
    return found


def split_image(image: str) -> tuple[str, str, str]:
    """name, tag, digest: registry ports (host:5000/x) are part of the name."""
    name, _, digest = image.partition("@")
    slash = name.rfind("/")
    colon = name.rfind(":")
    tag = ""
    if colon > slash:
        name, tag = name[:colon], name[colon + 1 :]
    return name, tag, digest


def set_image(objs: list[Obj], image: Obj) -> None:
    if set(image) - {"name", "newName", "newTag", "digest"}:
        raise KustomizeError(f"images fields not modelled: {sorted(image)}")
    for o in objs:
        for c in _images(o):
            name, tag, digest = split_image(c["image"])
            if name != image["name"]:
                continue
            name = image.get("newName", name)
            if "digest" in image:
                c["image"] = f"{name}@{image['digest']}"
            else:
                tag = str(image.get("newTag", tag))
                c["image"] = f"{name}:{tag}" if tag else name + (f"@{digest}" if digest else "")
