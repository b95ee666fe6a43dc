"""`evi models quantize`: NNCF makes an INT8 IR once and keeps it while its inputs are the same;
the IR serves like its FP32 model; the calibration set is the same every time. Real BlazeFace
short range (fetched into .cache), a small calibration set so each NNCF run takes ~2 s."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from evi.errors import ConfigError
from evi.wire import FrameMeta
from processors.models import BlazeFaceConfig, ModelCatalog, ModelUnavailable, load_models_yaml
from processors.pipeline import FramePipeline
from processors.quantize import (
    calibration_images,
    int8_models,
    is_current,
    quantize_catalog,
    quantize_model,
    record_path,
    stills,
)
from tests.fixtures.faces import astronaut_face_normalised
from tests.fixtures.images import astronaut
from tests.processors.conftest import encode, iou


def fp32_short(cache_dir: Path) -> BlazeFaceConfig:
    """BlazeFace short from the shared cache, by absolute path: the IR goes to a test's cache."""
    path = cache_dir / "models" / "blazeface" / "face_detection_short_range.tflite"
    return BlazeFaceConfig(name="blazeface-short", variant="short", path=path)


def int8_short() -> BlazeFaceConfig:
    return BlazeFaceConfig(name="blazeface-short-int8", variant="short",
                           quantize_from="blazeface-short")  # fmt: skip


def small_set() -> list[np.ndarray]:
    return [astronaut(), *stills()[:3]]


def test_quantize_makes_the_ir_once_and_keeps_it_while_its_inputs_match(
    cache_dir: Path, tmp_path: Path
) -> None:
    source, target = fp32_short(cache_dir), int8_short()
    images = small_set()

    first = quantize_model(target, source, tmp_path, images, "face")
    xml = tmp_path / "models" / "int8" / "blazeface-short-int8.xml"
    assert (first.state, first.path) == ("made", xml)
    assert xml.is_file() and xml.with_suffix(".bin").is_file()
    record = json.loads(record_path(xml).read_text())
    assert record["calibration_samples"] == 4 and record["nncf"] and record["inputs"]
    stamp = xml.stat().st_mtime_ns, xml.with_suffix(".bin").stat().st_mtime_ns

    again = quantize_model(target, source, tmp_path, images, "face")
    assert (again.state, again.seconds) == ("kept", 0.0)
    assert (xml.stat().st_mtime_ns, xml.with_suffix(".bin").stat().st_mtime_ns) == stamp

    # Other calibration data is another input: the IR is made again.
    other = quantize_model(target, source, tmp_path, images[:3], "face")
    assert other.state == "made"
    assert json.loads(record_path(xml).read_text())["inputs"] != record["inputs"]

    # Weights changed behind the record's back (a torn copy, an edit): made again, not trusted.
    xml.with_suffix(".bin").write_bytes(b"\0" * 16)
    assert quantize_model(target, source, tmp_path, images[:3], "face").state == "made"
    assert quantize_model(target, source, tmp_path, images[:3], "face").state == "kept"


def test_a_missing_record_or_file_is_not_current(cache_dir: Path, tmp_path: Path) -> None:
    done = quantize_model(int8_short(), fp32_short(cache_dir), tmp_path, small_set()[:2])
    digest = json.loads(record_path(done.path).read_text())["inputs"]
    assert is_current(done.path, digest)
    assert not is_current(done.path, "0" * 64)
    os.remove(done.path.with_suffix(".bin"))
    assert not is_current(done.path, digest)


def test_the_int8_ir_finds_the_astronaut_face_like_its_fp32_model(
    cache_dir: Path, tmp_path: Path, short_pipeline: FramePipeline
) -> None:
    done = quantize_model(int8_short(), fp32_short(cache_dir), tmp_path, small_set())
    int8 = FramePipeline.create("face", int8_short(), tmp_path)
    try:
        meta = FrameMeta("s", 0, 0, 512, 512, producer="test")
        jpeg = encode(astronaut())
        (q,) = int8.run_sync(meta, jpeg).detections
        (f,) = short_pipeline.run_sync(meta, jpeg).detections
    finally:
        int8.close()
    assert done.path.suffix == ".xml"
    qbox, fbox = (q.x1, q.y1, q.x2, q.y2), (f.x1, f.y1, f.x2, f.y2)
    assert iou(qbox, astronaut_face_normalised()) >= 0.5
    assert iou(qbox, fbox) >= 0.9 and abs(q.score - f.score) < 0.05


def test_quantize_catalog_names_each_int8_model_and_whether_its_source_is_the_default(
    cache_dir: Path, tmp_path: Path
) -> None:
    src = fp32_short(cache_dir).path
    catalog = ModelCatalog({"face": [
        BlazeFaceConfig(name="blazeface-short", variant="short", path=src),
        BlazeFaceConfig(name="other-short", variant="short", path=src),
        BlazeFaceConfig(name="a-int8", variant="short", quantize_from="other-short"),
        BlazeFaceConfig(name="b-int8", variant="short", quantize_from="blazeface-short"),
    ]})  # fmt: skip
    assert [m.name for _, m in int8_models(catalog)] == ["a-int8", "b-int8"]
    assert int8_models(catalog, ["person"]) == []
    done = list(quantize_catalog(catalog, tmp_path, images=small_set()[:2]))
    assert [(q.kind, q.name, q.source, q.state, q.of_default) for q in done] == [
        ("face", "a-int8", "other-short", "made", False),
        ("face", "b-int8", "blazeface-short", "made", True),
    ]


def test_the_calibration_set_is_the_same_every_time() -> None:
    a, b = calibration_images(frames=12, step=3), calibration_images(frames=12, step=3)
    assert len(a) == 4 + 6  # clip frames 0, 3, 6, 9 and six stills
    assert all(x.shape == y.shape and np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert all(x.dtype == np.uint8 and x.ndim == 3 and x.shape[2] == 3 for x in a)


def test_quantize_from_must_name_an_fp32_model_of_the_same_kind_and_family(
    tmp_path: Path,
) -> None:
    def load(text: str) -> ModelCatalog:
        path = tmp_path / "models.yaml"
        path.write_text(text)
        return load_models_yaml(path)

    ok = load("face:\n  - {name: s, family: blazeface}\n"
              "  - {name: s8, family: blazeface, quantize_from: s}\n")  # fmt: skip
    assert ok.choices("face")[1].path == Path("int8/s8.xml")
    assert [m.precision for m in ok.choices("face")] == ["FP32", "INT8"]
    with pytest.raises(ConfigError, match=r"models.face.s8.quantize_from: no face model 'x'"):
        load("face:\n  - {name: s, family: blazeface}\n"
             "  - {name: s8, family: blazeface, quantize_from: x}\n")  # fmt: skip
    with pytest.raises(ConfigError, match=r"s8.quantize_from: s must be an FP32 ssd model"):
        load("face:\n  - {name: s, family: blazeface}\n"
             "  - {name: s8, family: ssd, path: a.xml, quantize_from: s}\n")  # fmt: skip
    with pytest.raises(ConfigError, match=r"s9.quantize_from: s8 must be an FP32 blazeface"):
        load("face:\n  - {name: s, family: blazeface}\n"
             "  - {name: s8, family: blazeface, quantize_from: s}\n"
             "  - {name: s9, family: blazeface, quantize_from: s8}\n")  # fmt: skip


def test_an_unreadable_source_or_a_garbled_record_is_said_not_raised(
    cache_dir: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"not a model")
    source = BlazeFaceConfig(name="blazeface-short", variant="short", path=bad)
    with pytest.raises(ModelUnavailable, match=r"blazeface-short-int8: OpenVINO cannot read"):
        quantize_model(int8_short(), source, tmp_path, small_set()[:1])
    missing = BlazeFaceConfig(name="blazeface-short", variant="short", path=tmp_path / "no")
    with pytest.raises(ModelUnavailable, match=r"its FP32 model .* is missing"):
        quantize_model(int8_short(), missing, tmp_path, small_set()[:1])
    xml = tmp_path / "models" / "int8" / "x.xml"
    xml.parent.mkdir(parents=True, exist_ok=True)
    record_path(xml).write_text("[1, 2]")
    assert not is_current(xml, "0" * 64)
