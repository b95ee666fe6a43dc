"""BlazeFace on OpenVINO: bare model throughput, JPEG decode paths, per-frame pipeline time.

    python bench/model.py [--seconds 5] [--cache-dir .cache]

Prints one table per part. Bounded: about 4 x --seconds for the throughput part plus ~15 s for
the rest. Frames are the astronaut (skimage) centred on a grey canvas, JPEG q80.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, cast

import cv2
import numpy as np
import numpy.typing as npt
import openvino as ov
import simplejpeg
import skimage.data

from evi.settings import REPO_ROOT
from evi.wire import FrameMeta
from processors.adapters.base import letterbox, stretch
from processors.adapters.blazeface import BlazeFaceAdapter
from processors.decode import decode_jpeg
from processors.models import BlazeFaceConfig, fetch_models
from processors.pipeline import FramePipeline
from processors.runtime import Runtime

SIZES = [(640, 480), (1280, 720)]
U8 = npt.NDArray[np.uint8]


def astronaut() -> U8:
    return cast(U8, skimage.data.astronaut())  # type: ignore[no-untyped-call]


def rgb(bgr: np.ndarray | None) -> U8:
    assert bgr is not None
    return np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), dtype=np.uint8)


def astronaut_frame(w: int, h: int) -> U8:
    canvas = np.full((h, w, 3), 128, np.uint8)
    side = min(w, h)
    face = cv2.resize(astronaut(), (side, side), interpolation=cv2.INTER_AREA)
    x, y = (w - side) // 2, (h - side) // 2
    canvas[y : y + side, x : x + side] = face
    return canvas


def per_call_ms(fn: Callable[[], object], budget_s: float = 0.6) -> float:
    """Median of batches of calls, after a warm-up, within about `budget_s`."""
    fn()
    t0 = time.perf_counter()
    fn()
    once = max(time.perf_counter() - t0, 1e-6)
    batch = max(1, int(0.05 / once))
    samples: list[float] = []
    end = time.perf_counter() + budget_s
    while time.perf_counter() < end or len(samples) < 3:
        t0 = time.perf_counter()
        for _ in range(batch):
            fn()
        samples.append((time.perf_counter() - t0) / batch * 1000)
    return statistics.median(samples)


def bare_throughput(p: FramePipeline, seconds: float) -> tuple[float, int]:
    """Frames/s through the compiled model with AsyncInferQueue kept full, no Python decode."""
    rt = p.runtime
    tensor, _ = p.adapter.preprocess(astronaut())
    queue = ov.AsyncInferQueue(rt.compiled, rt.num_requests)
    done = 0
    lock = threading.Lock()

    def count(_request: ov.InferRequest, _userdata: Any) -> None:
        nonlocal done
        with lock:
            done += 1

    queue.set_callback(count)
    for _ in range(rt.num_requests * 2):  # warm-up
        queue.start_async(tensor, None, share_inputs=True)
    queue.wait_all()
    done = 0
    t0 = time.perf_counter()
    end = t0 + seconds
    while time.perf_counter() < end:
        queue.start_async(tensor, None, share_inputs=True)  # blocks while all requests are busy
    queue.wait_all()
    return done / (time.perf_counter() - t0), rt.num_requests


async def runtime_throughput(p: FramePipeline, seconds: float) -> float:
    """Frames/s through Runtime.infer from asyncio (our future/callback plumbing included)."""
    rt = p.runtime
    tensor, _ = p.adapter.preprocess(astronaut())
    done = 0
    end = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < end:
            await rt.infer(tensor)
            done += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(rt.num_requests * 2)))
    return done / (time.perf_counter() - t0)


def decode_paths(jpeg: bytes, target: tuple[int, int]) -> dict[str, Callable[[], object]]:
    buf = np.frombuffer(jpeg, np.uint8)
    h, w, _, _ = simplejpeg.decode_jpeg_header(jpeg)
    # OpenCV's own DCT downscale: the largest 1/2^k that still covers the fit.
    s = min(target[0] / w, target[1] / h)
    flag = cv2.IMREAD_COLOR
    for k, f in ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4),
                 (2, cv2.IMREAD_REDUCED_COLOR_2)):  # fmt: skip
        if w / k >= w * s and h / k >= h * s:
            flag = f
            break

    def cv2_full() -> object:
        return letterbox(rgb(cv2.imdecode(buf, cv2.IMREAD_COLOR)), target)

    def cv2_reduced() -> object:
        return letterbox(rgb(cv2.imdecode(buf, flag)), target)

    def sj_full() -> object:
        return letterbox(simplejpeg.decode_jpeg(jpeg, colorspace="RGB"), target)

    def sj_dct() -> object:
        return letterbox(decode_jpeg(jpeg, target), target)

    return {
        "cv2.imdecode full + letterbox": cv2_full,
        "cv2.imdecode REDUCED_n + letterbox": cv2_reduced,
        "simplejpeg full + letterbox": sj_full,
        "simplejpeg DCT scale + letterbox (ours)": sj_dct,
    }


def resize_paths(cache_dir: Path, rounds: int = 5) -> list[list[str]]:
    """Stretch to the model's input with cv2 on the CPU (DCT-scaled decode, then cv2.resize into
    a static u8 input: the pipeline's path) against OpenVINO's PrePostProcessor resize compiled
    into the model (dynamic-spatial u8 input, RESIZE_LINEAR), fed the DCT-scaled or the
    full-size decode. BlazeFace short, LATENCY hint, one thread, infer_sync: ms per frame."""
    from openvino.preprocess import PrePostProcessor, ResizeAlgorithm

    config = BlazeFaceConfig(name="bench")
    path = config.resolve_path(cache_dir)
    static = BlazeFaceAdapter(config)
    rt_static = Runtime(path, hint="LATENCY", threads=1, configure=static.configure)
    dynamic = BlazeFaceAdapter(config)

    def in_model(ppp: PrePostProcessor, model: ov.Model) -> None:
        dynamic.configure(ppp, model)
        ppp.input().tensor().set_spatial_dynamic_shape()
        ppp.input().preprocess().resize(ResizeAlgorithm.RESIZE_LINEAR)

    rt_dynamic = Runtime(path, hint="LATENCY", threads=1, configure=in_model)
    target = static.input_size
    rows = []
    try:
        for w, h in SIZES:
            jpeg = simplejpeg.encode_jpeg(astronaut_frame(w, h), 80, "RGB")

            def cv2_path(j: bytes = jpeg) -> object:
                return rt_static.infer_sync(
                    stretch(decode_jpeg(j, target, keep_aspect=False), target)[0]
                )

            def ppp_dct(j: bytes = jpeg) -> object:
                return rt_dynamic.infer_sync(decode_jpeg(j, target, keep_aspect=False)[None])

            def ppp_full(j: bytes = jpeg) -> object:
                return rt_dynamic.infer_sync(decode_jpeg(j)[None])

            def prep_only(j: bytes = jpeg) -> object:
                return stretch(decode_jpeg(j, target, keep_aspect=False), target)

            tensor = stretch(decode_jpeg(jpeg, target, keep_aspect=False), target)[0]
            paths: list[tuple[str, Callable[[], object]]] = [
                ("DCT decode + cv2 stretch + static model (ours)", cv2_path),
                ("DCT decode + PPP resize in model", ppp_dct),
                ("full decode + PPP resize in model", ppp_full),
                ("  of which DCT decode + cv2 stretch", prep_only),
                ("  of which static model inference", partial(rt_static.infer_sync, tensor)),
            ]
            # Interleaved rounds, best median of each: the machine is shared, noise only adds.
            samples = [[per_call_ms(fn, 0.3) for _, fn in paths] for _ in range(rounds)]
            best = [min(col) for col in zip(*samples, strict=True)]
            rows += [[f"{w}x{h}", n, f"{ms:.3f}"] for (n, _), ms in zip(paths, best, strict=True)]
    finally:
        rt_static.close()
        rt_dynamic.close()
    return rows


def table(title: str, head: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    print(f"\n## {title}\n")
    print("| " + " | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0, help="per throughput run")
    ap.add_argument("--cache-dir", type=Path, default=REPO_ROOT / ".cache")
    ap.add_argument("--resize-only", action="store_true", help="only the resize comparison")
    a = ap.parse_args()
    fetch_models(a.cache_dir)
    print(f"# bench/model.py — OpenVINO {ov.get_version()}, {os.cpu_count()} CPUs, "
          f"{ov.Core().get_property('CPU', 'FULL_DEVICE_NAME')}")  # fmt: skip
    table("Stretch to 128x128: cv2 on the CPU vs PrePostProcessor resize in the model (q80 JPEG)",
          ["frame", "path", "ms"], resize_paths(a.cache_dir))  # fmt: skip
    if a.resize_only:
        return

    pipelines = {
        v: FramePipeline.create(
            "face", BlazeFaceConfig(name=f"blazeface-{v}", variant=v), a.cache_dir
        )
        for v in ("short", "full")
    }
    try:
        rows = []
        for v, p in pipelines.items():
            fps, nreq = bare_throughput(p, a.seconds)
            afps = asyncio.run(runtime_throughput(p, a.seconds))
            tensor, _ = p.adapter.preprocess(astronaut())
            lat = per_call_ms(lambda p=p, t=tensor: p.runtime.infer_sync(t))  # type: ignore[misc]
            w, h = p.adapter.input_size
            rows.append([f"{v} {w}x{h}", str(nreq), f"{fps:.0f}", f"{afps:.0f}", f"{lat:.2f}"])
        table(
            "BlazeFace throughput (THROUGHPUT hint, all cores, u8 input, PPP to [-1,1])",
            ["model", "requests", "bare AsyncInferQueue fps", "Runtime.infer fps",
             "infer_sync ms"],
            rows,
        )  # fmt: skip

        rows = []
        for w, h in SIZES:
            jpeg = simplejpeg.encode_jpeg(astronaut_frame(w, h), 80, "RGB")
            for target in (pipelines["short"].adapter.input_size,
                           pipelines["full"].adapter.input_size):  # fmt: skip
                for name, fn in decode_paths(jpeg, target).items():
                    rows.append([f"{w}x{h} ({len(jpeg) // 1024} KiB)", f"{target[0]}",
                                 name, f"{per_call_ms(fn):.2f}"])  # fmt: skip
        table("JPEG q80 decode → letterboxed u8 tensor, one thread", ["frame", "to", "path", "ms"],
              rows)  # fmt: skip

        rows = []
        for w, h in SIZES:
            jpeg = simplejpeg.encode_jpeg(astronaut_frame(w, h), 80, "RGB")
            meta = FrameMeta("bench", 0, 0, w, h)
            for v, p in pipelines.items():
                r = p.run_sync(meta, jpeg)
                prep = per_call_ms(lambda p=p, j=jpeg: p.prepare(j))  # type: ignore[misc]
                total = per_call_ms(lambda p=p, m=meta, j=jpeg: p.run_sync(m, j))  # type: ignore[misc]
                tensor, lb = p.prepare(jpeg)
                out = p.runtime.infer_sync(tensor)
                post = per_call_ms(lambda p=p, o=out, lb=lb: p.adapter.postprocess(o, lb))  # type: ignore[misc]
                rows.append([f"{w}x{h}", v, f"{prep:.2f}", f"{post * 1000:.0f}",
                             f"{total:.2f}", str(len(r.detections))])  # fmt: skip
        table(
            "FramePipeline.run_sync per frame (decode+letterbox, infer, postprocess), one thread",
            ["frame", "model", "prepare ms", "postprocess µs", "total ms", "faces"],
            rows,
        )
    finally:
        for p in pipelines.values():
            p.close()


if __name__ == "__main__":
    main()
