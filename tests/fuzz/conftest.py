"""The real face pipeline for the handler fuzz and its crashers, when the model is present."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from evi.settings import REPO_ROOT
from processors.models import default_models
from processors.pipeline import FramePipeline


@pytest.fixture(scope="session")
def pipeline() -> Iterator[FramePipeline]:
    """BlazeFace (the face kind's default model) on OpenVINO; the model file comes from
    `make setup` (no download here)."""
    cache = REPO_ROOT / ".cache"
    model = default_models()["face"]
    if not model.resolve_path(cache).is_file():
        pytest.fail(f"{model.resolve_path(cache)} is missing: `make setup` fetches it")
    p = FramePipeline.create("face", model, cache)
    yield p
    p.close()
