"""OpenVINO, and nothing else: read a model, let a callable declare its preprocessing, compile it
once, and run it through an AsyncInferQueue from asyncio without blocking the event loop.

Every model format goes the same way: TFLite, ONNX, and Open Model Zoo IR (`.xml` beside its
`.bin`) all load with `Core.read_model`. This module knows no adapter; it hands out outputs by
tensor name.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import openvino as ov
import openvino.properties as props
import openvino.properties.hint as hints
from openvino import opset13 as opset
from openvino.preprocess import PrePostProcessor

from evi.errors import ConfigError

Outputs = dict[str, npt.NDArray[Any]]
Configure = Callable[[PrePostProcessor, ov.Model], None]

_HINTS = {
    "THROUGHPUT": hints.PerformanceMode.THROUGHPUT,
    "LATENCY": hints.PerformanceMode.LATENCY,
}


class Runtime:
    """One compiled model and its request queue; `infer` may be awaited from many tasks at once."""

    def __init__(
        self,
        model_path: Path,
        *,
        device: str = "CPU",
        hint: Literal["THROUGHPUT", "LATENCY"] = "THROUGHPUT",
        num_requests: int = 0,
        threads: int = 0,
        cache_dir: Path | None = None,
        configure: Configure | None = None,
        batch: int = 1,
    ) -> None:
        if not model_path.is_file():
            raise ConfigError(f"model file {model_path} does not exist")
        core = ov.Core()
        try:
            model = core.read_model(str(model_path))
        except RuntimeError as e:
            raise ConfigError(f"OpenVINO cannot read {model_path}: {_gist(e)}") from None
        if configure is not None:
            ppp = PrePostProcessor(model)
            configure(ppp, model)
            model = ppp.build()

        config: dict[str, Any] = {
            hints.performance_mode(): _HINTS[hint],
            # FP32 models infer in f32 on every CPU: OpenVINO's default on one with native bf16
            # (avx512_bf16, AMX) is bf16, whose 8-bit mantissa moves scores and boxes by ~1e-2,
            # so results would depend on the machine. Reduced precision is a model of its own
            # (an INT8 IR), chosen on purpose.
            hints.inference_precision(): ov.Type.f32,
        }
        if num_requests:
            config[hints.num_requests()] = num_requests
        if threads:
            config[props.inference_num_threads()] = threads
        if cache_dir is not None:
            ov_cache = cache_dir / "ov-cache"
            ov_cache.mkdir(parents=True, exist_ok=True)
            config[props.cache_dir()] = str(ov_cache)
        self.compiled = _compile(core, model, device, config, model_path)
        self.model_path = model_path
        self.device = device
        self.num_requests = num_requests or int(
            self.compiled.get_property(props.optimal_number_of_infer_requests())
        )
        self.output_names = [out.get_any_name() for out in self.compiled.outputs]
        self._single = _Queue(self.compiled, self.num_requests, self.output_names)
        # A second compile of the same model with a static batch dimension: one request runs
        # `batch` frames, for a backlog (OpenVINO's per-request overhead is paid once; its CPU
        # kernels run a dynamic batch slower than either static one, docs/benchmarks.md).
        self.batch = 1
        self.batched: ov.CompiledModel | None = None
        self._batched: _Queue | None = None
        wide = _widened(model, batch) if batch > 1 else None
        if wide is not None:
            self.batched = _compile(core, wide, device, config, model_path)
            self._batched = _Queue(self.batched, self.num_requests, self.output_names)
            self.batch = batch
        self._sync_request = self.compiled.create_infer_request()
        self._sync_lock = threading.Lock()

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.compiled.input().get_shape())

    async def infer(self, tensor: npt.NDArray[Any]) -> Outputs:
        """Run one input tensor ([1,...], or [`batch`,...] when batched); outputs by name.

        At most `num_requests` of each kind run at once; other callers wait here, on the loop.
        """
        if len(tensor) == 1 or self._batched is None:
            return await self._single.infer(tensor)
        return await self._batched.infer(tensor)

    def infer_sync(self, tensor: npt.NDArray[Any]) -> Outputs:
        """Blocking inference on a dedicated request, for benchmarks and tests."""
        with self._sync_lock:
            self._sync_request.infer(tensor, share_inputs=True)
            return _outputs(self._sync_request, self.output_names)

    def close(self) -> None:
        """Wait for requests in flight (their callbacks settle futures of a loop that may be
        closing; call_soon_threadsafe on a closed loop raises, so close before the loop ends)."""
        self._single.close()
        if self._batched is not None:
            self._batched.close()


class _Queue:
    """One compiled model's AsyncInferQueue, awaited from asyncio."""

    def __init__(self, compiled: ov.CompiledModel, requests: int, names: list[str]) -> None:
        self.requests = requests
        self.names = names
        self._queue = ov.AsyncInferQueue(compiled, requests)
        self._queue.set_callback(self._done)
        # Free requests, counted on the loop that uses us (made there on first use).
        self._slots: tuple[asyncio.AbstractEventLoop, asyncio.Semaphore] | None = None

    def _done(self, request: ov.InferRequest, userdata: Any) -> None:
        """AsyncInferQueue callback, on an OpenVINO thread: hand the outputs to the loop."""
        loop, future, slots, _tensor = userdata  # _tensor was shared, not copied: kept till now
        try:
            outputs: Outputs | RuntimeError = _outputs(request, self.names)
        except RuntimeError as e:  # a failed inference surfaces when its tensors are read
            outputs = e
        if loop.is_closed():  # the caller's loop is gone, and with it anyone to tell
            return
        loop.call_soon_threadsafe(_settle, future, slots, outputs)

    async def infer(self, tensor: npt.NDArray[Any]) -> Outputs:
        """`start_async` (which blocks while no request is idle) only once a slot is free; a
        slot is freed when its inference ends, not when its caller stops waiting."""
        loop = asyncio.get_running_loop()
        if self._slots is None or self._slots[0] is not loop:
            self._slots = (loop, asyncio.Semaphore(self.requests))
        slots = self._slots[1]
        await slots.acquire()
        future: asyncio.Future[Outputs] = loop.create_future()
        try:
            # The queue marks a request idle just after its callback returns, so this can wait
            # out the tail of a callback (microseconds), never an inference.
            self._queue.start_async(tensor, (loop, future, slots, tensor), share_inputs=True)
        except BaseException:
            slots.release()
            raise
        return await future

    def close(self) -> None:
        self._queue.wait_all()


def _outputs(request: ov.InferRequest, names: list[str]) -> Outputs:
    # Copy: the request's tensors are reused by its next inference.
    return {
        name: np.array(request.get_output_tensor(i).data, copy=True)
        for i, name in enumerate(names)
    }


def _widened(model: ov.Model, batch: int) -> ov.Model | None:
    """`model` with a static batch of `batch`, if its input and every output then lead with it;
    else None (the model stays unbatched).

    Converted TFLite graphs (MediaPipe's) flatten their heads with Reshape to a constant
    [1, -1, C], which folds a batch into the anchors; each such Reshape of a batch-1 tensor
    becomes [0, -1, C] with `special_zero` (0 copies the input's batch): the same at batch 1.
    """
    inp = model.input().get_partial_shape()
    if not (inp.is_static and inp[0].get_length() == 1):
        return None
    wide = model.clone()
    for op in wide.get_ordered_ops():
        if op.get_type_name() != "Reshape":
            continue
        target = op.input_value(1).get_node()
        first = op.input(0).get_partial_shape()
        if target.get_type_name() != "Constant" or not (first.rank.is_static and first[0] == 1):
            continue
        dims = target.get_data()
        if len(dims) and dims[0] == 1:
            keep = np.array([0, *dims[1:]], dtype=dims.dtype)
            kept = opset.reshape(op.input_value(0), opset.constant(keep), special_zero=True)
            op.output(0).replace(kept.output(0))
    try:
        wide.validate_nodes_and_infer_types()
        wide.reshape({wide.input(): [batch, *list(model.input().get_shape())[1:]]})
    except RuntimeError:
        return None
    for out in wide.outputs:
        shape = out.get_partial_shape()
        if not (shape.rank.is_static and shape.rank.get_length() >= 1 and shape[0].is_static
                and shape[0].get_length() == batch):  # fmt: skip
            return None
    return wide


def _compile(
    core: ov.Core, model: ov.Model, device: str, config: dict[str, Any], path: Path
) -> ov.CompiledModel:
    try:
        return core.compile_model(model, device, config)
    except RuntimeError as e:
        raise ConfigError(f"OpenVINO cannot compile {path} on {device}: {_gist(e)}") from None


def _settle(
    future: asyncio.Future[Outputs], slots: asyncio.Semaphore, outputs: Outputs | RuntimeError
) -> None:
    slots.release()
    if future.cancelled():
        return
    if isinstance(outputs, RuntimeError):
        future.set_exception(outputs)
    else:
        future.set_result(outputs)


def _gist(e: BaseException) -> str:
    """OpenVINO errors open with a stack of source locations; the cause is the last line."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return lines[-1] if lines else type(e).__name__
