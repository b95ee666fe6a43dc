"""Helpers for tests/deploy: rendered objects, container environments, effective settings.

A service's effective settings are what its own CLI prints with `--print-settings`, given the
command, the env and the ConfigMap files a manifest or the compose file would give it.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from evi.cli import main as evi_main
from tests.deploy import dockerfile

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
DOCKERFILE = REPO / "deploy" / "docker" / "Dockerfile"
OVERLAYS = ("dev", "prod")
Obj = dict[str, Any]


def of_kind(objs: list[Obj], kind: str) -> list[Obj]:
    return [o for o in objs if o["kind"] == kind]


def named(objs: list[Obj], kind: str, name: str) -> Obj:
    hits = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(hits) == 1, f"{kind}/{name}: {len(hits)} objects"
    return hits[0]


def pod_spec(o: Obj) -> Obj:
    spec: Obj = o["spec"]["template"]["spec"]
    return spec


def workloads(objs: list[Obj]) -> list[Obj]:
    return [o for o in objs if o["kind"] in ("Deployment", "Job")]


def component(o: Obj) -> str:
    label: str = o["metadata"]["labels"]["app.kubernetes.io/component"]
    return label


def container_env(objs: list[Obj], container: Obj) -> dict[str, str]:
    """A container's environment as the kubelet builds it: envFrom first, then env.

    ConfigMap values are resolved from the rendered objects (a missing ConfigMap fails); Secret
    values, which are never committed, become placeholders.
    """
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        assert "configMapRef" in source, f"envFrom {source}: only ConfigMaps are expected"
        cm = named(objs, "ConfigMap", source["configMapRef"]["name"])
        env.update({k: str(v) for k, v in cm.get("data", {}).items()})
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = str(var["value"])
        elif "configMapKeyRef" in var["valueFrom"]:
            ref = var["valueFrom"]["configMapKeyRef"]
            env[var["name"]] = str(named(objs, "ConfigMap", ref["name"])["data"][ref["key"]])
        elif "secretKeyRef" in var["valueFrom"]:
            ref = var["valueFrom"]["secretKeyRef"]
            env[var["name"]] = f"placeholder-{ref['name']}-{ref['key']}"
        else:
            raise AssertionError(f"env {var['name']}: unexpected source {var['valueFrom']}")
    return env


def configmap_files(objs: list[Obj], pod: Obj, container: Obj) -> dict[str, str]:
    """mounted path -> content, for every ConfigMap file the container sees."""
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    files: dict[str, str] = {}
    for mount in container.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        if "configMap" in volume:
            cm = named(objs, "ConfigMap", volume["configMap"]["name"])
            for key, content in cm.get("data", {}).items():
                files[f"{mount['mountPath'].rstrip('/')}/{key}"] = content
    return files


@contextlib.contextmanager
def service_env(env: dict[str, str]) -> Iterator[None]:
    """Exactly `env` as the process's EVI_* variables, restored afterwards."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("EVI_")}
    for k in saved:
        del os.environ[k]
    os.environ.update(env)
    try:
        yield
    finally:
        for k in [k for k in os.environ if k.startswith("EVI_")]:
            del os.environ[k]
        os.environ.update(saved)


def relocate(values: list[str], files: dict[str, str], root: Path) -> list[str]:
    """Write the mounted files under `root` and point the values that name them there."""
    out = list(values)
    for mounted, content in files.items():
        local = root / mounted.lstrip("/")
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_text(content)
        out = [str(local) if v == mounted else v for v in out]
    return out


def effective_settings(
    args: list[str], env: dict[str, str], files: dict[str, str] | None = None
) -> Obj:
    """The settings `evi <args>` runs with, from the service's own `--print-settings`."""
    files = files or {}
    with tempfile.TemporaryDirectory(prefix="evi-deploy-") as tmp:
        root = Path(tmp)
        args = relocate(args, files, root)
        names = list(env)
        env = dict(zip(names, relocate([env[n] for n in names], files, root), strict=True))
        out = io.StringIO()
        with service_env(env), contextlib.redirect_stdout(out):
            code = evi_main([*args, "--print-settings"])
    assert code == 0, f"evi {' '.join(args)} --print-settings exited {code}"
    doc: Obj = json.loads(out.getvalue())
    return doc


def image_env() -> dict[str, str]:
    """The EVI_* variables the image itself sets (its final stage's ENV)."""
    _, stages = dockerfile.parse(DOCKERFILE)
    return {k: v for k, v in stages[-1].env().items() if k.startswith("EVI_")}


def k8s_settings(objs: list[Obj], workload: Obj) -> Obj:
    """Effective settings of a workload's (single) container, as deployed: the image's ENV,
    then the manifest's env, args and mounted ConfigMap files."""
    pod = pod_spec(workload)
    (container,) = pod["containers"]
    env = image_env() | container_env(objs, container)
    files = configmap_files(objs, pod, container)
    return effective_settings(list(container["args"]), env, files)


COMPOSE_VAR = re.compile(r"\$\{([A-Z0-9_]+)(?::-([^}]*))?\}")


def compose_command(service: Obj, env: dict[str, str] | None = None) -> list[str]:
    """The exec-form command with `${NAME:-default}` interpolated as compose does (from `env`)."""
    command = service["command"]
    assert isinstance(command, list), "commands are exec form (a list)"
    env = env or {}
    return [COMPOSE_VAR.sub(lambda m: env.get(m[1]) or m[2] or "", str(c)) for c in command]


def compose_env(service: Obj, env: dict[str, str] | None = None) -> dict[str, str]:
    """The service's environment, `${NAME:-default}` interpolated as compose does (from `env`);
    `${NAME:?error}` stays as written."""
    env = env or {}
    return {k: COMPOSE_VAR.sub(lambda m: env.get(m[1]) or m[2] or "", str(v))
            for k, v in service.get("environment", {}).items()}


PROMQL_METRIC = re.compile(r"\b(evi_[a-z0-9_]+)\b")


def topics_created(args: list[str], env: dict[str, str]) -> list[Any]:
    """The TopicSpecs `evi <args>` (`kafka topics ...`) asks the broker for, without a broker."""
    import evi.kafka

    asked: list[Any] = []

    def fake_ensure_topics(kafka: Any, specs: list[Any], timeout: float = 30.0) -> list[str]:
        asked.extend(specs)
        return [s.name for s in specs]

    real = evi.kafka.ensure_topics
    evi.kafka.ensure_topics = fake_ensure_topics
    try:
        with service_env(env), contextlib.redirect_stdout(io.StringIO()):
            code = evi_main(args)
    finally:
        evi.kafka.ensure_topics = real
    assert code == 0, f"evi {' '.join(args)} exited {code}"
    return asked
