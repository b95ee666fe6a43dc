"""The OpenVINO runtime on its own: async results go to their own callers, IR loads the same way."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import openvino as ov
import pytest

from evi.errors import ConfigError
from processors.adapters.blazeface import BlazeFaceAdapter
from processors.models import BlazeFaceConfig
from processors.runtime import Runtime


@pytest.fixture(scope="module")
def short_model(cache_dir: Path) -> Path:
    return BlazeFaceConfig(name="bf").resolve_path(cache_dir)


def runtime(path: Path, cache_dir: Path | None = None, **kw: object) -> Runtime:
    adapter = BlazeFaceAdapter(BlazeFaceConfig(name="bf"))
    return Runtime(path, cache_dir=cache_dir, configure=adapter.configure, **kw)  # type: ignore[arg-type]


def frames(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    return [rng.integers(0, 256, (1, 128, 128, 3), dtype=np.uint8) for _ in range(n)]


async def test_concurrent_infers_each_get_their_own_outputs(
    short_model: Path, cache_dir: Path
) -> None:
    rt = runtime(short_model, cache_dir, num_requests=3)
    try:
        assert rt.num_requests == 3
        inputs = frames(12)
        expected = [rt.infer_sync(t) for t in inputs]
        # 12 callers on 3 requests: they queue on the loop, complete out of order, and still each
        # get the outputs of their own input.
        got = await asyncio.gather(*(rt.infer(t) for t in inputs))
        assert len(got) == 12
        for mine, want in zip(got, expected, strict=True):
            assert set(mine) == {"regressors", "classificators"}
            np.testing.assert_allclose(mine["regressors"], want["regressors"], atol=1e-4)
            np.testing.assert_allclose(mine["classificators"], want["classificators"], atol=1e-4)
        # The inputs really differ, so correspondence was tested, not assumed.
        firsts = {round(float(g["classificators"].max()), 3) for g in got}
        assert len(firsts) > 6
    finally:
        rt.close()


async def test_cancelled_callers_do_not_leak_requests(short_model: Path) -> None:
    rt = runtime(short_model, num_requests=2)
    try:
        inputs = frames(6)
        tasks = [asyncio.ensure_future(rt.infer(t)) for t in inputs]
        await asyncio.sleep(0)
        for t in tasks[:4]:
            t.cancel()
        done = await asyncio.gather(*tasks, return_exceptions=True)
        assert sum(isinstance(d, asyncio.CancelledError) for d in done) == 4
        # Every request came back: more inferences than requests still complete.
        again = await asyncio.wait_for(asyncio.gather(*(rt.infer(t) for t in inputs)), 30)
        assert len(again) == 6
    finally:
        rt.close()


def test_default_request_count_is_the_devices_optimum(short_model: Path) -> None:
    rt = runtime(short_model, hint="THROUGHPUT")
    try:
        optimal = rt.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")
        assert rt.num_requests == optimal >= 1
        assert str(rt.compiled.get_property("PERFORMANCE_HINT")).endswith("THROUGHPUT")
    finally:
        rt.close()


def test_threads_and_latency_hint_reach_the_device(short_model: Path) -> None:
    rt = runtime(short_model, hint="LATENCY", threads=1)
    try:
        assert rt.compiled.get_property("INFERENCE_NUM_THREADS") == 1
        assert str(rt.compiled.get_property("PERFORMANCE_HINT")).endswith("LATENCY")
    finally:
        rt.close()


def test_ir_xml_loads_through_the_same_path(short_model: Path, tmp_path: Path) -> None:
    """Open Model Zoo ships IR (.xml + .bin): save BlazeFace as IR and load that instead."""
    ir = tmp_path / "blazeface.xml"
    ov.save_model(ov.Core().read_model(str(short_model)), str(ir), compress_to_fp16=False)
    assert ir.with_suffix(".bin").is_file()
    from_ir, from_tflite = runtime(ir), runtime(short_model)
    try:
        tensor = frames(1)[0]
        a, b = from_ir.infer_sync(tensor), from_tflite.infer_sync(tensor)
        assert set(a) == set(b) == {"regressors", "classificators"}
        np.testing.assert_allclose(a["regressors"], b["regressors"], atol=1e-3)
    finally:
        from_ir.close()
        from_tflite.close()


def test_cache_dir_gets_compiled_blobs(short_model: Path, tmp_path: Path) -> None:
    runtime(short_model, tmp_path).close()
    assert any((tmp_path / "ov-cache").iterdir())


def test_missing_or_unreadable_model_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        Runtime(tmp_path / "nope.tflite")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(ConfigError, match="cannot read"):
        Runtime(junk)
