"""Every model a generated deploy file serves is in the image: each compose `processor-*` service
and each k8s processor Deployment, through the processor's own settings (`--print-settings`) and
model choice (`select_model` on the catalog it would read), names a file that the Dockerfile's
stages make (`evi models fetch` in `build`, `evi models quantize` in `quantize`) and copy into the
final stage, with no volume mounted over it. So deploy/generate.py can never serve a group whose
model the image lacks. Offline: the Dockerfile is read by tests/deploy/image.py, no engine."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest

from processors.models import ModelCatalog, default_models, load_models_yaml, select_model
from tests.deploy import image
from tests.deploy.dockerfile import parse
from tests.deploy.support import (
    DOCKERFILE,
    Obj,
    component,
    compose_command,
    compose_env,
    effective_settings,
    image_env,
    k8s_settings,
    named,
    of_kind,
    pod_spec,
)

# Served by the prod overlay from an image you build `FROM evi` with their IR copied in
# (docs/deploy.md, overlays/prod/catalog.yaml): no registry has them. Exactly these may be absent.
DERIVED_IMAGE_MODELS = {"prod": {"person-detection-0200", "yolov8n-vehicle"}}


@pytest.fixture(scope="module")
def image_files() -> set[PurePosixPath]:
    _, stages = parse(DOCKERFILE)
    return image.build(stages)["final"].files


def model_files(catalog: ModelCatalog, settings: Obj) -> tuple[str, list[PurePosixPath]]:
    """The model a processor with these settings loads, and the files it needs (IR: + .bin)."""
    model = select_model(catalog, settings["kind"], settings["model"])
    path = PurePosixPath(model.resolve_path(Path(settings["cache_dir"])))
    return model.name, [path, *([path.with_suffix(".bin")] if path.suffix == ".xml" else [])]


def test_the_image_has_every_model_of_the_built_in_catalog(
    image_files: set[PurePosixPath],
) -> None:
    """What compose and the dev overlay serve comes from it: every entry, FP32 and INT8."""
    cache = image_env()["EVI_CACHE_DIR"]
    catalog = default_models()
    for kind in catalog:
        for m in catalog.choices(kind):
            _, files = model_files(catalog, {"kind": kind, "model": m.name, "cache_dir": cache})
            assert set(files) <= image_files, f"{kind}/{m.name}: the image lacks {files}"


def test_every_compose_processor_model_is_in_the_image(
    compose: Obj, image_files: set[PurePosixPath]
) -> None:
    served = []
    for name, service in compose["services"].items():
        if not name.startswith("processor-"):
            continue
        assert service.get("image", "").startswith("evi:"), f"{name} runs another image"
        assert not service.get("volumes"), f"{name}: a volume could hide the image's models"
        settings = effective_settings(compose_command(service),
                                      image_env() | compose_env(service))
        assert settings["models_file"] is None, f"{name}: the built-in catalog, as generated"
        model, files = model_files(default_models(), settings)
        assert set(files) <= image_files, f"{name} serves {model}: the image lacks {files}"
        served.append(model)
    assert {"blazeface-short", "blazeface-short-int8", "mediapipe-pose", "pose-int8"} <= set(
        served), served


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_every_k8s_processor_model_is_in_the_image(
    overlay: str, rendered: dict[str, list[Obj]], image_files: set[PurePosixPath],
    tmp_path: Path,
) -> None:  # fmt: skip
    objs = rendered[overlay]
    models_file = tmp_path / "models.yaml"
    models_file.write_text(named(objs, "ConfigMap", "evi-models")["data"]["models.yaml"])
    catalog = load_models_yaml(models_file)
    missing, served = set(), []
    for dep in of_kind(objs, "Deployment"):
        if component(dep) != "processor":
            continue
        (container,) = pod_spec(dep)["containers"]
        assert container["image"].split(":")[0].split("@")[0] == "evi", container["image"]
        settings = k8s_settings(objs, dep)
        model, files = model_files(catalog, settings)
        served.append(model)
        mounts = [PurePosixPath(m["mountPath"]) for m in container.get("volumeMounts", [])]
        for f in files:
            hidden = [m for m in mounts if m == f or m in f.parents]
            assert not hidden, f"{dep['metadata']['name']}: {hidden} is mounted over {f}"
        if not set(files) <= image_files:
            missing.add(model)
    assert missing == DERIVED_IMAGE_MODELS.get(overlay, set()), (
        f"{overlay} serves models the image lacks: {missing}")
    assert len(served) > len(missing)
