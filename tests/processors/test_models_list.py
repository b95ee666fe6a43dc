"""`evi models list`: every catalog model with its kind, family, precision, whether its files are
there and its role. No OpenVINO, no NNCF: it only looks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from evi.settings import REPO_ROOT
from processors.model_commands import LIST_COLUMNS, list_rows
from processors.models import default_models


def touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")


def test_list_shows_every_default_model_and_which_files_are_present(tmp_path: Path) -> None:
    catalog = default_models()
    assert [r[4] for r in list_rows(catalog, tmp_path)] == ["missing"] * 6

    touch(tmp_path / "models/blazeface/face_detection_short_range.tflite")
    touch(tmp_path / "models/int8/blazeface-short-int8.xml")  # IR without its weights
    touch(tmp_path / "models/int8/blazeface-full-int8.xml")
    touch(tmp_path / "models/int8/blazeface-full-int8.bin")
    assert list_rows(catalog, tmp_path) == [
        ("face", "blazeface-short", "blazeface", "FP32", "present", "default"),
        ("face", "blazeface-full", "blazeface", "FP32", "missing", "-"),
        ("face", "blazeface-short-int8", "blazeface", "INT8", "missing", "int8 of blazeface-short"),
        ("face", "blazeface-full-int8", "blazeface", "INT8", "present", "int8 of blazeface-full"),
        ("person", "mediapipe-pose", "blazeface", "FP32", "missing", "default"),
        ("person", "pose-int8", "blazeface", "INT8", "missing", "int8 of mediapipe-pose"),
    ]


def test_the_command_lists_a_models_file_as_a_table(tmp_path: Path) -> None:
    models = tmp_path / "models.yaml"
    models.write_text(
        "face:\n"
        "  - {name: blazeface-short, family: blazeface}\n"
        "  - {name: blazeface-short-int8, family: blazeface, quantize_from: blazeface-short}\n"
        "vehicle: {name: vd, family: ssd, path: /abs/vd.xml}\n"
        "traffic: {name: y8, family: yolo, path: y8/y8.onnx}\n"
    )
    touch(tmp_path / "cache/models/y8/y8.onnx")
    env = {**os.environ, "EVI_CACHE_DIR": str(tmp_path / "cache")}
    done = subprocess.run(
        [sys.executable, "-m", "evi.cli", "models", "list", "--models-file", str(models)],
        capture_output=True, text=True, timeout=60, cwd=REPO_ROOT, env=env, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    header, *lines = done.stdout.splitlines()
    assert header.split() == list(LIST_COLUMNS)
    assert [line.split(None, 5) for line in lines] == [
        ["face", "blazeface-short", "blazeface", "FP32", "missing", "default"],
        ["face", "blazeface-short-int8", "blazeface", "INT8", "missing", "int8 of blazeface-short"],
        ["vehicle", "vd", "ssd", "FP32", "missing", "default"],
        ["traffic", "y8", "yolo", "FP32", "present", "default"],
    ]


def test_a_bad_models_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    models = tmp_path / "models.yaml"
    models.write_text("face:\n  - {name: s8, family: blazeface, quantize_from: nope}\n")
    done = subprocess.run(
        [sys.executable, "-m", "evi.cli", "models", "list", "--models-file", str(models)],
        capture_output=True, text=True, timeout=60, cwd=REPO_ROOT, check=False,
    )  # fmt: skip
    assert done.stdout == ""
    assert done.returncode != 0
    assert done.stderr.strip().count("\n") == 0 and "quantize_from: no face model 'nope'" in (
        done.stderr)
