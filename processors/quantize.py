"""Post-training INT8: every catalog entry with `quantize_from` is its FP32 model quantised by NNCF
(`nncf.quantize`, 8-bit symmetric weights and activations, the default preset) on a fixed
calibration set, saved as OpenVINO IR under `<cache>/models` (by default `int8/<name>.xml`).

Calibration (deterministic): frames 0, 3, 6, … of the generated sample clip (`evi sample`, 640x480,
JPEG in an MJPG file, decoded as a processor would), and scikit-image pictures that are no test's
ground truth (coffee, chelsea, rocket, immunohistochemistry, hubble_deep_field, coins). Each
picture goes through the model's own adapter (letterbox or stretch) and input declaration (colour
order, mean, scale, layout), so the IR sees what the FP32 model sees in a processor.

Idempotent: beside the IR, `<name>.json` records the digest of the inputs (FP32 file, calibration
tensors, NNCF and OpenVINO versions, recipe) and of the IR files; a model whose record matches is
kept without running NNCF. A file lock keeps concurrent `make test`/`evi dev` runs from racing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import numpy.typing as npt

from evi.errors import ConfigError
from evi.progress import progress
from evi.settings import REPO_ROOT
from processors.models import ModelCatalog, ModelConfig, ModelUnavailable

U8 = npt.NDArray[np.uint8]
F32 = npt.NDArray[np.float32]

RECIPE = "nncf.quantize default preset, all calibration samples, v1"  # change → every IR remade
CLIP_FRAMES = 120  # the sample clip's default length; one loop
CLIP_STEP = 3  # every third frame: 40 frames, 4 of them without a face
STILLS = ("coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field", "coins")


@dataclass(frozen=True)
class Quantized:
    kind: str
    name: str
    source: str
    state: Literal["made", "kept"]
    path: Path
    seconds: float  # NNCF and saving; 0 when kept
    of_default: bool = False  # its source is its kind's default model


def int8_models(catalog: ModelCatalog, kinds: Sequence[str] = ()) -> list[tuple[str, ModelConfig]]:
    """(kind, entry) of every INT8 entry, of `kinds` only when given, in catalog order."""
    return [(kind, m) for kind in catalog if not kinds or kind in kinds
            for m in catalog.choices(kind) if m.quantize_from]  # fmt: skip


def calibration_images(frames: int = CLIP_FRAMES, step: int = CLIP_STEP) -> list[U8]:
    """The calibration pictures, RGB u8, always the same ones in the same order."""
    return [*sample_clip_frames(frames, step), *stills()]


def sample_clip_frames(frames: int, step: int) -> list[U8]:
    """Frames of `evi sample` (a subprocess: processors do not import the producers)."""
    with tempfile.TemporaryDirectory(prefix="evi-calib-") as tmp:
        clip = Path(tmp) / "sample.avi"
        cmd = [sys.executable, "-m", "evi.cli", "sample", "--out", str(clip),
               "--frames", str(frames)]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False,
                              cwd=REPO_ROOT)
        if done.returncode != 0:
            raise ModelUnavailable(f"evi sample failed: {done.stderr.strip()[-200:]}")
        cap = cv2.VideoCapture(str(clip))
        out: list[U8] = []
        try:
            for i in range(frames):
                ok, bgr = cap.read()
                if not ok:
                    raise ModelUnavailable(f"the sample clip ended at frame {i} of {frames}")
                if i % step == 0:
                    out.append(np.ascontiguousarray(bgr[:, :, ::-1]))
        finally:
            cap.release()
    return out


def stills() -> list[U8]:
    import skimage.data

    out = []
    for name in STILLS:
        image = np.asarray(getattr(skimage.data, name)(), dtype=np.uint8)
        out.append(np.ascontiguousarray(np.dstack([image] * 3) if image.ndim == 2 else image))
    return out


def model_inputs(config: ModelConfig, model: Any, images: Sequence[U8]) -> list[F32]:
    """The FP32 model's own input for each image: the adapter's resize, then in numpy what its
    PrePostProcessor steps do in a processor (colour order, f32, mean, scale, layout)."""
    from openvino.preprocess import PrePostProcessor

    from processors.adapters import create_adapter
    from processors.adapters.base import input_layout

    adapter = create_adapter(config)
    adapter.configure(PrePostProcessor(model), model)  # binds the input size; nothing is built
    spec = adapter.spec
    layout = input_layout(model, spec.layout, config.name)
    tensors = []
    for image in images:
        batch, _ = adapter.preprocess(image)  # u8 [1,H,W,3] RGB
        x: F32 = batch.astype(np.float32)
        if spec.color == "BGR":
            x = x[..., ::-1]
        x = ((x - np.asarray(spec.mean, np.float32))
             / np.asarray(spec.scale, np.float32)).astype(np.float32)
        if layout.strip("[]") == "NCHW":
            x = x.transpose(0, 3, 1, 2)
        tensors.append(np.ascontiguousarray(x, dtype=np.float32))
    return tensors


def inputs_digest(source: Path, tensors: Sequence[F32]) -> str:
    h = hashlib.sha256()
    for part in (RECIPE, version("nncf"), version("openvino"), _sha256(source)):
        h.update(part.encode() + b"\0")
    for t in tensors:
        h.update(str(t.shape).encode())
        h.update(t.tobytes())
    return h.hexdigest()


def record_path(xml: Path) -> Path:
    return xml.with_suffix(".json")


def is_current(xml: Path, digest: str) -> bool:
    """The IR is there, unchanged since it was made from these inputs."""
    try:
        record = json.loads(record_path(xml).read_text())
        return isinstance(record, dict) and bool(
            record.get("inputs") == digest
            and record.get("xml_sha256") == _sha256(xml)
            and record.get("bin_sha256") == _sha256(xml.with_suffix(".bin"))
        )
    except (OSError, ValueError):
        return False


def quantize_model(
    config: ModelConfig, source: ModelConfig, cache_dir: Path, images: Sequence[U8],
    kind: str = "",
) -> Quantized:  # fmt: skip
    """Make `config`'s IR from `source` unless the recorded inputs digest says it is current."""
    import openvino as ov

    src = source.resolve_path(cache_dir)
    if not src.is_file():
        raise ModelUnavailable(f"{config.name}: its FP32 model {src} is missing (evi models fetch)")
    xml = config.resolve_path(cache_dir)
    if xml.suffix != ".xml":
        raise ConfigError(f"model {config.name}: an INT8 model's path must end in .xml, not {xml}")
    xml.parent.mkdir(parents=True, exist_ok=True)
    with _locked(xml.parent / ".quantize.lock"):
        try:
            model = ov.Core().read_model(str(src))
        except RuntimeError as e:
            why = (str(e).strip().splitlines() or ["unreadable"])[-1]
            raise ModelUnavailable(f"{config.name}: OpenVINO cannot read {src}: {why}") from None
        tensors = model_inputs(source, model, images)
        digest = inputs_digest(src, tensors)
        if is_current(xml, digest):
            return Quantized(kind, config.name, source.name, "kept", xml, 0.0)
        started = time.perf_counter()
        int8 = _nncf_quantize(model, tensors)
        with tempfile.TemporaryDirectory(prefix=".tmp-", dir=xml.parent) as tmp:
            part = Path(tmp) / xml.name
            ov.save_model(int8, str(part), compress_to_fp16=False)
            os.replace(part.with_suffix(".bin"), xml.with_suffix(".bin"))
            os.replace(part, xml)
        seconds = time.perf_counter() - started
        record = {
            "inputs": digest, "source": str(src), "calibration_samples": len(tensors),
            "nncf": version("nncf"), "openvino": version("openvino"), "recipe": RECIPE,
            "seconds": round(seconds, 2), "xml_sha256": _sha256(xml),
            "bin_sha256": _sha256(xml.with_suffix(".bin")),
        }  # fmt: skip
        part_record = record_path(xml).with_suffix(f".{os.getpid()}.part")
        part_record.write_text(json.dumps(record, indent=1) + "\n")
        os.replace(part_record, record_path(xml))  # last: a record always describes whole files
    return Quantized(kind, config.name, source.name, "made", xml, seconds)


def quantize_catalog(
    catalog: ModelCatalog, cache_dir: Path, kinds: Sequence[str] = (),
    images: Sequence[U8] | None = None,
) -> Iterator[Quantized]:  # fmt: skip
    """Quantize every INT8 entry (of `kinds`), one by one; the calibration set is made once."""
    todo = int8_models(catalog, kinds)
    if not todo:
        return
    with progress("calibration images", len(todo) + 1) as bar:
        if images is None:
            images = calibration_images()
        bar.advance()
        for kind, config in todo:
            bar.update(description=f"quantizing {config.name}")
            by_name = {m.name: m for m in catalog.choices(kind)}
            source = by_name[str(config.quantize_from)]
            done = quantize_model(config, source, cache_dir, images, kind)
            bar.advance()
            yield dataclasses.replace(done, of_default=source.name == catalog[kind].name)


def _nncf_quantize(model: Any, tensors: Sequence[F32]) -> Any:
    import logging

    try:
        import nncf
    except ImportError:
        raise ModelUnavailable(
            "NNCF is not installed: it is the `quantize` extra (pip install -e '.[quantize]'; "
            "`make` installs the dev lock, which has it)"
        ) from None

    # Only its logger: nncf.set_log_level also sets the level of every handler on that logger,
    # and NNCF's logger can hold handlers that are not its own (it silenced pytest's capture).
    logging.getLogger("nncf").setLevel(logging.ERROR)
    # Its progress bar (rich, on stdout) is not ours to print: our stdout is one line per model.
    with contextlib.redirect_stdout(io.StringIO()):
        return nncf.quantize(model, nncf.Dataset(list(tensors)), subset_size=len(tensors))


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()

