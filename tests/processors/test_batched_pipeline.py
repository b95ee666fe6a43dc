"""The worker's batched path (FramePipeline.run_many: one decode job, one inference request of
several frames, outputs split per frame) gives the detections of the one-frame path (`run_sync`:
decode, a [1,...] request) within 1e-3, on the ground-truth pictures and the sample clip."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import simplejpeg

from evi.errors import BadFrame
from evi.wire import Detection, FrameMeta, Result
from processors.models import BlazeFaceConfig
from processors.pipeline import FramePipeline
from producers.sample import SampleClip
from tests.fixtures.images import rgb_sample
from tests.processors.conftest import encode

BATCH = 4


def pictures() -> list[bytes]:
    """The ground-truth pictures of the BlazeFace and pose tests, and frames of the sample
    clip at both bench sizes (faces and people in some, none in others)."""
    out = [encode(rgb_sample(n)) for n in ("astronaut", "camera", "coffee", "rocket", "chelsea")]
    for w, h in ((640, 480), (1280, 720)):
        clip = SampleClip(width=w, height=h, frames=12)
        out += [simplejpeg.encode_jpeg(np.ascontiguousarray(clip.frame(i)), 80, "BGR")
                for i in range(0, 12, 2)]  # fmt: skip
    return out


def meta(i: int, jpeg: bytes) -> FrameMeta:
    h, w = simplejpeg.decode_jpeg_header(jpeg)[:2]
    return FrameMeta("cam", i, 0, w, h)


def flat(detections: list[Detection]) -> list[float]:
    out: list[float] = []
    for d in detections:
        out += [d.score, d.x1, d.y1, d.x2, d.y2, *(c for p in d.keypoints or () for c in p)]
    return out


@pytest.fixture(scope="module", params=["blazeface-short", "mediapipe-pose"])
def batched(request: pytest.FixtureRequest, cache_dir: Path) -> Iterator[FramePipeline]:
    variant = "pose" if request.param == "mediapipe-pose" else "short"
    cfg = BlazeFaceConfig(name=request.param, variant=variant)
    p = FramePipeline.create("face", cfg, cache_dir, batch=BATCH)
    yield p
    p.close()


async def test_batched_detections_equal_one_frame_ones(batched: FramePipeline) -> None:
    assert batched.batch == BATCH and batched.runtime.batched is not None
    jpegs = pictures()
    metas = [meta(i, j) for i, j in enumerate(jpegs)]
    one = [batched.run_sync(m, j) for m, j in zip(metas, jpegs, strict=True)]
    many: list[Result | BadFrame] = []
    for at in range(0, len(jpegs), BATCH):  # full requests, and a padded last one (2 of 4)
        many += await batched.run_many(metas[at : at + BATCH], jpegs[at : at + BATCH])
    assert len(many) == len(one) == 17
    assert sum(1 for r in one if r.detections) >= 3  # the comparison is not of empty lists
    for a, b in zip(one, many, strict=True):
        assert isinstance(b, Result) and (b.stream, b.seq) == (a.stream, a.seq)
        assert [d.label for d in b.detections] == [d.label for d in a.detections]
        assert np.allclose(flat(b.detections), flat(a.detections), atol=1e-3, rtol=0)


async def test_a_bad_frame_in_a_batch_is_its_own_and_the_others_go_on(
    batched: FramePipeline,
) -> None:
    jpegs = pictures()[:4]
    jpegs[1] = jpegs[1][: len(jpegs[1]) // 3]  # truncated
    metas = [meta(i, j) for i, j in enumerate(jpegs) if i != 1]
    metas.insert(1, FrameMeta("cam", 1, 0, 512, 512))
    out = await batched.run_many(metas, jpegs)
    assert [type(o).__name__ for o in out] == ["Result", "BadFrame", "Result", "Result"]
    bad = out[1]
    assert isinstance(bad, BadFrame) and bad.reason == "corrupt-jpeg"
    alone = batched.run_sync(metas[0], jpegs[0])
    first = out[0]
    assert isinstance(first, Result)
    assert np.allclose(flat(first.detections), flat(alone.detections), atol=1e-3, rtol=0)


async def test_few_frames_of_a_batched_model_run_one_request_each(
    batched: FramePipeline,
) -> None:
    """At live rates (a frame or two a batch) no request is padded to the batch."""
    jpegs = pictures()[:1]
    calls: list[tuple[int, ...]] = []
    infer = batched.runtime.infer

    async def seen(tensor: np.ndarray) -> dict[str, np.ndarray]:
        calls.append(tensor.shape)
        return await infer(tensor)

    batched.runtime.infer = seen  # type: ignore[method-assign]
    try:
        await batched.run_many([meta(0, jpegs[0])], jpegs)
        await batched.run_many([meta(i, jpegs[0]) for i in range(3)], jpegs * 3)
    finally:
        del batched.runtime.infer
    size = batched.runtime.input_shape[1:]
    assert calls == [(1, *size), (BATCH, *size)]
