"""SSD through real OpenVINO: generated IR models (tests/fixtures/ov_models.py) loaded by the
Runtime and the FramePipeline exactly as an Open Model Zoo .xml would be."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from evi.errors import ConfigError
from evi.wire import Detection, FrameMeta
from processors import pipeline as pipeline_module
from processors.adapters.ssd import SsdAdapter
from processors.models import SsdConfig
from processors.pipeline import FramePipeline
from processors.runtime import Runtime
from tests.fixtures.ov_models import image_model, ssd_rows
from tests.processors.conftest import encode

SIZE = (64, 48)
ROWS = ssd_rows((0, 1, 0.0, 0.1, 0.1, 0.4, 0.5), (0, 2, 0.0, 0.5, 0.5, 0.9, 0.9))
LABELS = {1: "blue", 2: "red"}


def colour_weights(first: int, second: int) -> np.ndarray:
    """Row 0's confidence is channel `first`'s mean / 255, row 1's is channel `second`'s."""
    w = np.zeros((3, *ROWS.shape), np.float32)
    w[first, 0, 0, 0, 2] = 1 / 255
    w[second, 0, 0, 1, 2] = 1 / 255
    return w


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same detector as NCHW (BGR means in channels 0 and 2), NHWC, and NHWC whose shape
    alone is ambiguous ([1,3,8,3]) but whose rt_info says the layout."""
    d = tmp_path_factory.mktemp("ssd")
    bgr = {"detection_out": (ROWS, colour_weights(0, 2))}
    return {
        "nchw": image_model(d / "nchw.xml", bgr, size=SIZE, layout="NCHW"),
        "nhwc": image_model(d / "nhwc.xml", bgr, size=SIZE, layout="NHWC"),
        "ambiguous": image_model(d / "amb.xml", bgr, size=(8, 3), layout="NHWC"),
        "ambiguous-said": image_model(
            d / "said.xml", bgr, size=(8, 3), layout="NHWC", set_layout=True
        ),
    }


def detect(p: FramePipeline, image: np.ndarray) -> list[Detection]:
    meta = FrameMeta("cam", 1, 0, image.shape[1], image.shape[0])
    return p.run_sync(meta, encode(image, 95)).detections


def flat(rgb: tuple[int, int, int], w: int = 160, h: int = 120) -> np.ndarray:
    return np.full((h, w, 3), rgb, np.uint8)


def pipeline(path: Path, tmp_path: Path, **cfg: object) -> FramePipeline:
    config = SsdConfig(name="ssd-test", path=path, labels=LABELS, score_threshold=0.3, **cfg)
    return FramePipeline.create("person", config, tmp_path)


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_ir_decodes_through_the_pipeline_in_bgr(
    models: dict[str, Path], tmp_path: Path, layout: str
) -> None:
    """OMZ's default colour order is BGR: a red frame lights channel 2, so row 1 ("red")."""
    p = pipeline(models[layout], tmp_path)
    try:
        assert p.adapter.input_size == SIZE
        assert p.runtime.input_shape == (1, 48, 64, 3)  # u8 NHWC RGB goes in, whatever the model
        red = detect(p, flat((255, 0, 0)))
        assert [(d.label, round(d.score, 1)) for d in red] == [("red", 1.0)]
        assert (red[0].x1, red[0].y1, red[0].x2, red[0].y2) == pytest.approx(
            (0.5, 0.5, 0.9, 0.9), abs=1e-6
        )  # stretched: tensor coordinates are frame coordinates
        assert [d.label for d in detect(p, flat((0, 0, 255)))] == ["blue"]
        assert detect(p, flat((0, 255, 0))) == []  # green: neither row reaches the threshold
    finally:
        p.close()


def test_rgb_models_say_so_in_the_config(models: dict[str, Path], tmp_path: Path) -> None:
    p = pipeline(models["nchw"], tmp_path, color="RGB")
    try:
        assert [d.label for d in detect(p, flat((255, 0, 0)))] == ["blue"]  # red is channel 0
    finally:
        p.close()


def test_mean_and_scale_are_compiled_per_channel(models: dict[str, Path]) -> None:
    """(pixel - mean) / scale in the model's (BGR) order: exact on a raw tensor."""
    adapter = SsdAdapter(
        SsdConfig(name="t", path=models["nchw"], mean=(0, 0, 55), scale=(1, 1, 2))
    )
    rt = Runtime(models["nchw"], configure=adapter.configure)
    try:
        tensor, _ = adapter.preprocess(flat((255, 0, 100)))  # R 255, B 100
        rows = rt.infer_sync(tensor)["detection_out"]
        assert rows[0, 0, 0, 2] == pytest.approx(100 / 255, abs=1e-6)  # B: untouched
        assert rows[0, 0, 1, 2] == pytest.approx((255 - 55) / 2 / 255, abs=1e-6)  # R
    finally:
        rt.close()


def test_layout_comes_from_rt_info_or_config(models: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot tell the layout.*set `layout`"):
        pipeline(models["ambiguous"], tmp_path)
    for p in (
        pipeline(models["ambiguous-said"], tmp_path),  # the model's rt_info: NHWC
        pipeline(models["ambiguous"], tmp_path, layout="NHWC"),  # the entry says it
    ):
        try:
            assert p.adapter.input_size == (8, 3)
            assert [d.label for d in detect(p, flat((255, 0, 0)))] == ["red"]
        finally:
            p.close()


def test_stretch_and_letterbox_map_the_same_box_differently(
    models: dict[str, Path], tmp_path: Path
) -> None:
    """Row 1 covers tensor (0.5,0.5)-(0.9,0.9). A 192x48 frame stretches to 64x48, so frame
    coordinates equal tensor ones; letterboxed it becomes 64x16 with 16 rows padded above."""
    frame = flat((255, 0, 0), 192, 48)
    boxes = {}
    for resize in ("stretch", "letterbox"):
        p = pipeline(models["nchw"], tmp_path, resize=resize)
        try:
            d = detect(p, frame)
            assert [x.label for x in d] == ["red"]
            boxes[resize] = (d[0].x1, d[0].y1, d[0].x2, d[0].y2)
        finally:
            p.close()
    assert boxes["stretch"] == pytest.approx((0.5, 0.5, 0.9, 0.9), abs=1e-6)
    # y: (0.5 * 48 - 16) / 16 = 0.5, (0.9 * 48 - 16) / 16 = 1.7 → clipped to 1
    assert boxes["letterbox"] == pytest.approx((0.5, 0.5, 0.9, 1.0), abs=1e-6)


def test_missing_ir_file_is_not_fetched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only BlazeFace's files are fetchable; a missing OMZ file is an error at once, no pip."""

    def no_fetch(cache_dir: Path) -> list[Path]:
        raise AssertionError("fetch_models called for an OMZ file")

    monkeypatch.setattr(pipeline_module, "fetch_models", no_fetch)
    config = SsdConfig(name="x", path=Path("omz/person-detection-retail-0013.xml"))
    with pytest.raises(ConfigError, match=r"person-detection-retail-0013\.xml does not exist"):
        FramePipeline.create("person", config, tmp_path)
