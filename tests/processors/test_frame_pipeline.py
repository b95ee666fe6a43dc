"""FramePipeline: frames in, Results out, from asyncio and blocking callers alike."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from evi.errors import BadFrame, ConfigError
from evi.wire import FrameMeta, Result
from processors.models import BlazeFaceConfig
from processors.pipeline import FramePipeline
from tests.fixtures.faces import astronaut_face_normalised
from tests.fixtures.images import astronaut, resized
from tests.processors.conftest import encode, iou


def meta(seq: int, w: int = 512, h: int = 512) -> FrameMeta:
    return FrameMeta(stream="cam1", seq=seq, ts_ms=1_700_000_000_000 + seq, width=w, height=h)


async def test_run_returns_a_result_with_the_frames_identity(
    short_pipeline: FramePipeline,
) -> None:
    before = int(time.time() * 1000)
    result = await short_pipeline.run(meta(7), encode(astronaut()))
    assert isinstance(result, Result)
    assert (result.stream, result.seq, result.ts_ms) == ("cam1", 7, 1_700_000_000_007)
    assert (result.kind, result.model) == ("face", "blazeface-short")
    assert (result.width, result.height) == (512, 512)
    assert before <= result.processed_ms <= int(time.time() * 1000)
    assert 0 < result.infer_ms < 5000
    assert len(result.detections) == 1
    d = result.detections[0]
    assert iou((d.x1, d.y1, d.x2, d.y2), astronaut_face_normalised()) >= 0.5
    assert short_pipeline.model_name == "blazeface-short"


async def test_concurrent_frames_keep_their_own_results(short_pipeline: FramePipeline) -> None:
    """Frames with and without a face, in flight together: each result matches its frame."""
    face = astronaut()
    blank = np.full((480, 640, 3), 128, np.uint8)
    flipped = np.ascontiguousarray(face[:, ::-1])  # the face moves to the other side
    images = [face, blank, flipped] * 4
    results = await asyncio.gather(
        *(short_pipeline.run(meta(i, im.shape[1], im.shape[0]), encode(im))
          for i, im in enumerate(images))
    )  # fmt: skip
    assert [r.seq for r in results] == list(range(12))
    x1, y1, x2, y2 = astronaut_face_normalised()
    mirrored = (1 - x2, y1, 1 - x1, y2)
    for r, im in zip(results, images, strict=True):
        if im is blank:
            assert r.detections == [] and (r.width, r.height) == (640, 480)
        else:
            assert len(r.detections) == 1
            d = r.detections[0]
            want = astronaut_face_normalised() if im is face else mirrored
            assert iou((d.x1, d.y1, d.x2, d.y2), want) >= 0.5


async def test_the_event_loop_stays_free(short_pipeline: FramePipeline) -> None:
    """While 16 big frames are decoded and inferred, a 5 ms ticker on the loop keeps ticking."""
    big = encode(resized(astronaut(), (1920, 1920)), 90)
    gaps: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not stop.is_set():
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    tick = asyncio.ensure_future(ticker())
    results = await asyncio.gather(*(short_pipeline.run(meta(i), big) for i in range(16)))
    stop.set()
    await tick
    assert len(results) == 16 and all(len(r.detections) == 1 for r in results)
    assert len(gaps) >= 3
    assert max(gaps) < 0.1, f"loop stalled {max(gaps) * 1000:.0f} ms"


async def test_bad_jpeg_raises_bad_frame(short_pipeline: FramePipeline) -> None:
    jpeg = encode(astronaut())
    with pytest.raises(BadFrame) as e:
        await short_pipeline.run(meta(1), jpeg[: len(jpeg) // 3])
    assert e.value.reason == "corrupt-jpeg"
    # ...and the pipeline goes on.
    assert len((await short_pipeline.run(meta(2), jpeg)).detections) == 1


def test_run_sync_agrees_with_run(short_pipeline: FramePipeline) -> None:
    jpeg = encode(astronaut())
    sync = short_pipeline.run_sync(meta(3), jpeg)
    via_loop = asyncio.run(short_pipeline.run(meta(3), jpeg))
    assert len(sync.detections) == len(via_loop.detections) == 1
    a, b = sync.detections[0], via_loop.detections[0]
    assert (a.x1, a.y1, a.x2, a.y2) == pytest.approx((b.x1, b.y1, b.x2, b.y2), abs=1e-4)
    assert sync.model == via_loop.model and sync.seq == via_loop.seq == 3


def test_run_sync_from_several_threads(short_pipeline: FramePipeline) -> None:
    jpeg = encode(astronaut())
    counts: list[int] = []
    lock = threading.Lock()

    def work() -> None:
        for i in range(5):
            n = len(short_pipeline.run_sync(meta(i), jpeg).detections)
            with lock:
                counts.append(n)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert counts == [1] * 15


def test_create_checks_kind_and_model_file(cache_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="kind 'Face'"):
        FramePipeline.create("Face", BlazeFaceConfig(name="x"), cache_dir)
    missing = BlazeFaceConfig(name="x", path=tmp_path / "missing.tflite")
    with pytest.raises(ConfigError, match=r"missing\.tflite does not exist"):
        FramePipeline.create("face", missing, cache_dir)
    # A full-range file under a short-range entry is caught when the model is bound.
    full_file = Path("blazeface/face_detection_full_range.tflite")
    wrong = BlazeFaceConfig(name="x", variant="short", path=full_file)
    with pytest.raises(ConfigError, match="wrong variant or file"):
        FramePipeline.create("face", wrong, cache_dir)
