"""The per-frame work of one kind: JPEG → pixels → model → detections → Result.

Plain code, no Kafka: `processors.app` calls `run` for each frame of a batch, tests and benchmarks
call it (or `run_sync`) directly. Decoding and letterboxing run in a small thread pool (cv2 and
libjpeg-turbo release the GIL), inference in OpenVINO's queue; the event loop only waits.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from evi.errors import BadFrame, ConfigError
from evi.topics import check_kind
from evi.wire import Detection, FrameMeta, Result
from processors.adapters import create_adapter
from processors.adapters.base import U8, Adapter, Letterbox
from processors.decode import DEFAULT_BUDGET, decode_jpeg
from processors.jpeg_header import DecodeBudget
from processors.models import ModelConfig, ModelUnavailable, fetch_models, fetchable_paths
from processors.runtime import Outputs, Runtime

Outcome = Result | BadFrame


def _bad(name: str, e: BaseException) -> BadFrame:
    return BadFrame(f"{name}-error", f"{type(e).__name__}: {e}"[:500])


async def run_each(
    run: Callable[[FrameMeta, bytes], Awaitable[Result]],
    metas: Sequence[FrameMeta], jpegs: Sequence[bytes],
) -> list[Outcome]:  # fmt: skip
    """`run_many`'s contract from a one-frame `run`: every frame at once, each its own outcome
    (a stand-in pipeline's, in tests)."""
    done = await asyncio.gather(*(run(m, j) for m, j in zip(metas, jpegs, strict=True)),
                                return_exceptions=True)  # fmt: skip
    out: list[Outcome] = []
    for d in done:
        if isinstance(d, Exception) and not isinstance(d, BadFrame):
            d = _bad("frame", d)
        elif isinstance(d, BaseException) and not isinstance(d, BadFrame):
            raise d  # cancelled, interrupted: not about a frame
        out.append(d)
    return out


_PENDING = BadFrame("internal-error", "not run")  # a slot of run_many's list, always replaced


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Whatever one frame's `name` stage raises becomes a BadFrame (`<name>-error`): the frame is
    dead-lettered and the worker goes on. BadFrame passes as it is."""
    try:
        yield
    except BadFrame:
        raise
    except Exception as e:
        raise _bad(name, e) from e


class FramePipeline:
    """One kind served by one model: an adapter, a compiled runtime and a decode pool."""

    def __init__(
        self, kind: str, model: ModelConfig, adapter: Adapter[Any], runtime: Runtime,
        decode_threads: int = 2, budget: DecodeBudget = DEFAULT_BUDGET,
    ) -> None:  # fmt: skip
        self.kind = kind
        self.budget = budget
        self.model = model
        self.adapter = adapter
        self.runtime = runtime
        self._pool = ThreadPoolExecutor(decode_threads, thread_name_prefix=f"evi-decode-{kind}")

    @classmethod
    def create(
        cls, kind: str, model: ModelConfig, cache_dir: Path, decode_threads: int = 2,
        budget: DecodeBudget = DEFAULT_BUDGET, batch: int = 1,
    ) -> FramePipeline:  # fmt: skip
        """Build the adapter, fetch the model file if it is one we can fetch, compile it."""
        check_kind(kind)
        adapter = create_adapter(model)
        path = model.resolve_path(cache_dir)
        if not path.is_file():
            if path not in fetchable_paths(cache_dir):
                made_by = " (`evi models quantize` makes it)" if model.quantize_from else ""
                raise ConfigError(f"model {model.name}: {path} does not exist{made_by}")
            try:
                fetch_models(cache_dir)
            except ModelUnavailable as e:
                raise ConfigError(f"model {model.name}: {path} is missing and {e}") from None
        runtime = Runtime(
            path,
            device=model.device,
            hint=model.performance_hint,
            num_requests=model.num_requests,
            threads=model.inference_threads,
            cache_dir=cache_dir,
            configure=adapter.configure,
            batch=batch,
        )
        return cls(kind, model, adapter, runtime, decode_threads, budget)

    @property
    def model_name(self) -> str:
        return self.model.name

    def prepare(self, jpeg: bytes) -> tuple[U8, Letterbox]:
        """Decode (at a DCT scale near the model's input) and letterbox or stretch: the CPU-bound
        half."""
        keep_aspect = self.adapter.spec.resize == "letterbox"
        image = decode_jpeg(jpeg, self.adapter.input_size, keep_aspect=keep_aspect,
                            budget=self.budget)  # fmt: skip
        with stage("preprocess"):
            return self.adapter.preprocess(image)

    async def run(self, meta: FrameMeta, jpeg: bytes) -> Result:
        """One frame; raises BadFrame for a frame that can never be processed."""
        loop = asyncio.get_running_loop()
        tensor, prep = await loop.run_in_executor(self._pool, self.prepare, jpeg)
        t0 = time.perf_counter()
        with stage("infer"):
            outputs = await self.runtime.infer(tensor)
        infer_ms = (time.perf_counter() - t0) * 1000
        # Postprocess is ~0.1-0.2 ms of small numpy calls that hold the GIL anyway: a thread hop
        # would add latency without freeing the loop.
        with stage("postprocess"):
            detections = self.adapter.postprocess(outputs, prep)
        return self._result(meta, detections, infer_ms)

    @property
    def batch(self) -> int:
        """Frames one inference request takes (1 when the model cannot be batched)."""
        return self.runtime.batch

    async def run_many(self, metas: Sequence[FrameMeta], jpegs: Sequence[bytes]) -> list[Outcome]:
        """Frames of a backlog, together: one decode-thread job decodes them all, one request of
        `batch` frames infers them when more than half of it is filled (the rest is padding),
        else a request each. One frame's failure is its own BadFrame; the others go on."""
        loop = asyncio.get_running_loop()
        prepared = await loop.run_in_executor(self._pool, self._prepare_all, jpegs)
        out: list[Outcome] = [p if isinstance(p, BadFrame) else _PENDING for p in prepared]
        ready = [(i, p) for i, p in enumerate(prepared) if not isinstance(p, BadFrame)]
        if not ready:
            return out
        t0 = time.perf_counter()
        runs: list[Outputs | BaseException]
        if self.batch > 1 and 2 * len(ready) > self.batch:
            runs = await self._infer_batched([t for _, (t, _) in ready])
        else:
            infer = self.runtime.infer
            runs = await asyncio.gather(*(infer(t) for _, (t, _) in ready),
                                        return_exceptions=True)  # fmt: skip
        infer_ms = (time.perf_counter() - t0) * 1000
        for (i, (_, prep)), outputs in zip(ready, runs, strict=True):
            out[i] = self._finish(metas[i], outputs, prep, infer_ms)
        return out

    async def _infer_batched(self, tensors: list[U8]) -> list[Outputs | BaseException]:
        """One request for up to `batch` tensors ([1,...] each); each frame's outputs, [1,...]."""
        n = len(tensors)
        if n < self.batch:  # zero frames fill the request; their outputs are never read
            tensors = tensors + [np.zeros_like(tensors[0])] * (self.batch - n)
        try:
            outputs = await self.runtime.infer(np.concatenate(tensors))
        except Exception as e:
            return [e] * n
        return [{name: a[i : i + 1] for name, a in outputs.items()} for i in range(n)]

    def _prepare_all(self, jpegs: Sequence[bytes]) -> list[tuple[U8, Letterbox] | BadFrame]:
        out: list[tuple[U8, Letterbox] | BadFrame] = []
        for jpeg in jpegs:
            try:
                out.append(self.prepare(jpeg))
            except Exception as e:  # BadFrame from a stage; anything else is the frame's too
                out.append(e if isinstance(e, BadFrame) else _bad("frame", e))
        return out

    def _finish(
        self, meta: FrameMeta, outputs: Outputs | BaseException, prep: Letterbox, infer_ms: float
    ) -> Outcome:
        if isinstance(outputs, BadFrame):
            return outputs
        if isinstance(outputs, Exception):  # as stage("infer") names it for one frame
            return _bad("infer", outputs)
        if isinstance(outputs, BaseException):  # cancelled: not about the frame
            raise outputs
        try:
            with stage("postprocess"):
                detections = self.adapter.postprocess(outputs, prep)
        except BadFrame as bad:
            return bad
        return self._result(meta, detections, infer_ms)

    def run_sync(self, meta: FrameMeta, jpeg: bytes) -> Result:
        """The same work, blocking, on the calling thread (benchmarks, tests)."""
        tensor, prep = self.prepare(jpeg)
        t0 = time.perf_counter()
        with stage("infer"):
            outputs = self.runtime.infer_sync(tensor)
        infer_ms = (time.perf_counter() - t0) * 1000
        with stage("postprocess"):
            detections = self.adapter.postprocess(outputs, prep)
        return self._result(meta, detections, infer_ms)

    def _result(self, meta: FrameMeta, detections: list[Detection], infer_ms: float) -> Result:
        return Result(
            stream=meta.stream,
            seq=meta.seq,
            ts_ms=meta.ts_ms,
            processed_ms=int(time.time() * 1000),
            kind=self.kind,
            model=self.model.name,
            detections=detections,
            infer_ms=infer_ms,
            width=meta.width,
            height=meta.height,
        )

    def close(self) -> None:
        """Finish frames in flight, then release the pool."""
        self.runtime.close()
        self._pool.shutdown(wait=True)
