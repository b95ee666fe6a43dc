"""INT8 beside FP32: throughput per core and agreement, for every INT8 entry of the catalog.

    python bench/int8.py [--rounds 3] [--seconds 3] [--cpu 1] [--frames 120]

For each catalog entry with `quantize_from` (made first by `evi models quantize` if it must be),
against its FP32 model, in one process pinned to one core (`--cpu`), one inference thread, one
infer request, LATENCY hint, so frames/s is per core:

(a) bare model: frames/s of the compiled model with one preprocessed tensor (bench/model.py's
    AsyncInferQueue loop);
(b) pipeline: frames/s of FramePipeline.run_sync (JPEG decode → letterbox → infer → postprocess,
    the worker's per-frame work without Kafka) over the sample clip's JPEGs (640x480, q80).
FP32 and INT8 alternate `--rounds` times, `--seconds` each, so both see the same background load;
medians and each round's INT8/FP32 ratio.

Agreement, on the same JPEGs through both pipelines: INT8 boxes matched one-to-one to FP32 boxes
(greedy by IoU, a match needs IoU >= 0.5): matched-box IoU (mean, min), |score delta| (mean,
max), misses (FP32 boxes INT8 lacks), extras (INT8 boxes FP32 lacks); and against ground truth
(the face's box in each sample-clip frame, from SampleClip.placement and the hand-measured
astronaut face; the astronaut picture; coffee and rocket with no face): boxes found at IoU >= 0.5,
missed, and false detections, per precision.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import openvino as ov
import simplejpeg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python bench/int8.py`

from bench.model import table
from evi.settings import REPO_ROOT
from evi.wire import Detection, FrameMeta
from processors.models import ModelConfig, default_models, fetch_models
from processors.pipeline import FramePipeline
from processors.quantize import int8_models, quantize_catalog
from producers.sample import SampleClip
from tests.fixtures.faces import ASTRONAUT_FACE, astronaut_face_normalised
from tests.fixtures.images import sample

Box = tuple[float, float, float, float]
MATCH_IOU = 0.5
W, H = 640, 480


@dataclass
class Agreement:
    ious: list[float] = field(default_factory=list)
    deltas: list[float] = field(default_factory=list)
    misses: int = 0
    extras: int = 0

    def add(self, fp32: Sequence[Detection], int8: Sequence[Detection]) -> None:
        pairs = sorted(((iou(box(f), box(q)), i, j) for i, f in enumerate(fp32)
                        for j, q in enumerate(int8)), reverse=True)  # fmt: skip
        used_f: set[int] = set()
        used_q: set[int] = set()
        for v, i, j in pairs:
            if v >= MATCH_IOU and i not in used_f and j not in used_q:
                used_f.add(i)
                used_q.add(j)
                self.ious.append(v)
                self.deltas.append(abs(fp32[i].score - int8[j].score))
        self.misses += len(fp32) - len(used_f)
        self.extras += len(int8) - len(used_q)


@dataclass
class Truth:
    found: int = 0
    missed: int = 0
    false: int = 0

    def add(self, truth: Sequence[Box], got: Sequence[Detection]) -> None:
        free = list(got)
        for t in truth:
            best = max(free, key=lambda d: iou(t, box(d)), default=None)
            if best is not None and iou(t, box(best)) >= MATCH_IOU:
                self.found += 1
                free.remove(best)
            else:
                self.missed += 1
        self.false += len(free)


def box(d: Detection) -> Box:
    return (d.x1, d.y1, d.x2, d.y2)


def iou(a: Box, b: Box) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def clip_face(clip: SampleClip, i: int) -> list[Box]:
    """The astronaut's face box in sample-clip frame i (normalised, clipped to the frame)."""
    place = clip.placement(i)
    if place is None:
        return []
    scale, dx, dy = place
    x1, y1, x2, y2 = ASTRONAUT_FACE
    return [(max(0.0, (x1 * scale + dx) / clip.width), max(0.0, (y1 * scale + dy) / clip.height),
             min(1.0, (x2 * scale + dx) / clip.width), min(1.0, (y2 * scale + dy) / clip.height))]


def face_truth(frames: int) -> list[tuple[str, bytes, int, int, list[Box]]]:
    """(name, JPEG, width, height, true boxes): the sample clip, then the still pictures."""
    clip = SampleClip(W, H, frames)
    out = []
    for i in range(frames):
        jpeg = simplejpeg.encode_jpeg(np.ascontiguousarray(clip.frame(i)), 80, "BGR")
        out.append((f"clip-{i}", jpeg, W, H, clip_face(clip, i)))
    stills = {"astronaut": [astronaut_face_normalised()], "coffee": [], "rocket": []}
    for name, boxes in stills.items():
        image = np.ascontiguousarray(sample(name))
        h, w = image.shape[:2]
        out.append((name, simplejpeg.encode_jpeg(image, 90, "RGB"), w, h, boxes))
    return out


# Ground truth by kind; a kind without any is compared FP32 to INT8 only, on the sample clip.
TRUTH: dict[str, Callable[[int], list[tuple[str, bytes, int, int, list[Box]]]]] = {
    "face": face_truth,
}


def single_core(config: ModelConfig) -> ModelConfig:
    return config.model_copy(update={"performance_hint": "LATENCY", "num_requests": 1,
                                     "inference_threads": 1})  # fmt: skip


@dataclass
class Meter:
    """Frames, wall seconds and process CPU seconds, summed over interleaved slices."""

    frames: int = 0
    wall: float = 0.0
    cpu: float = 0.0

    def run(self, step: Callable[[int], object], seconds: float) -> None:
        w0, c0, n = time.perf_counter(), time.process_time(), 0
        while time.perf_counter() - w0 < seconds:
            step(self.frames + n)
            n += 1
        self.wall += time.perf_counter() - w0
        self.cpu += time.process_time() - c0
        self.frames += n


def interleaved(steps: dict[str, Callable[[int], object]], seconds: float, slice_s: float = 0.25
                ) -> dict[str, Meter]:  # fmt: skip
    """Each step for `seconds` in all, in slices taking turns: drifting load hits all alike."""
    meters = {tag: Meter() for tag in steps}
    for step in steps.values():
        for i in range(5):
            step(i)  # warm-up
    for _ in range(max(1, round(seconds / slice_s))):
        for tag, step in steps.items():
            meters[tag].run(step, slice_s)
    return meters


def bare_step(p: FramePipeline) -> Callable[[int], object]:
    """One inference of the astronaut, preprocessed once (bench/model.py's bare model, sync)."""
    tensor = p.adapter.preprocess(sample("astronaut"))[0]
    return lambda _i: p.runtime.infer_sync(tensor)


def pipeline_step(p: FramePipeline, jpegs: Sequence[tuple[FrameMeta, bytes]]
                  ) -> Callable[[int], object]:  # fmt: skip
    """Frame i of `jpegs` through the worker's per-frame work (decode → … → postprocess)."""
    return lambda i: p.run_sync(*jpegs[i % len(jpegs)])


def load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--cpu", type=int, default=1, help="the one core the process runs on")
    ap.add_argument("--frames", type=int, default=120, help="sample-clip frames (one loop: 120)")
    ap.add_argument("--cache-dir", type=Path, default=REPO_ROOT / ".cache")
    a = ap.parse_args()
    cache = a.cache_dir
    fetch_models(cache)
    catalog = default_models()
    started = time.perf_counter()
    made = list(quantize_catalog(catalog, cache))
    quantize_s = time.perf_counter() - started
    os.sched_setaffinity(0, {a.cpu})
    cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"],
                         capture_output=True, text=True, check=False).stdout.strip()
    print(f"# bench/int8.py — OpenVINO {ov.get_version()}, core {a.cpu} of {os.cpu_count()} "
          f"({cpu}), one inference thread; load {load()} at start")
    print("# quantize: " + ", ".join(f"{q.name} {q.state} {q.seconds:.1f}s" for q in made)
          + f" ({quantize_s:.1f}s with the calibration set and digests)")

    speed_rows, agree_rows, truth_rows = [], [], []
    for kind, int8_cfg in int8_models(catalog):
        fp32_cfg = next(m for m in catalog.choices(kind) if m.name == int8_cfg.quantize_from)
        samples = (TRUTH.get(kind) or face_truth)(a.frames)
        jpegs = [(FrameMeta(name, i, 0, w, h, producer="bench"), jpeg)
                 for i, (name, jpeg, w, h, _) in enumerate(samples)]  # fmt: skip
        clip_jpegs = [j for j in jpegs if j[0].stream.startswith("clip-")]
        fp32 = FramePipeline.create(kind, single_core(fp32_cfg), cache, decode_threads=1)
        int8 = FramePipeline.create(kind, single_core(int8_cfg), cache, decode_threads=1)
        try:
            for what, steps in (
                ("bare model", {"FP32": bare_step(fp32), "INT8": bare_step(int8)}),
                ("pipeline", {"FP32": pipeline_step(fp32, clip_jpegs),
                              "INT8": pipeline_step(int8, clip_jpegs)}),
            ):  # fmt: skip
                per_cpu: dict[str, list[float]] = {"FP32": [], "INT8": []}
                per_wall: dict[str, list[float]] = {"FP32": [], "INT8": []}
                for _ in range(a.rounds):
                    for tag, m in interleaved(steps, a.seconds).items():
                        per_cpu[tag].append(m.frames / m.cpu)
                        per_wall[tag].append(m.frames / m.wall)
                ratios = [q / f for f, q in zip(per_cpu["FP32"], per_cpu["INT8"], strict=True)]
                wall = [q / f for f, q in zip(per_wall["FP32"], per_wall["INT8"], strict=True)]
                med = statistics.median
                speed_rows.append([
                    f"{fp32_cfg.name} → {int8_cfg.name}", what,
                    f"{med(per_cpu['FP32']):.0f}", f"{med(per_cpu['INT8']):.0f}",
                    f"**{med(ratios):.2f}x** ({' '.join(f'{r:.2f}' for r in ratios)})",
                    f"{med(per_wall['FP32']):.0f} / {med(per_wall['INT8']):.0f} = "
                    f"{med(wall):.2f}x",
                ])  # fmt: skip
            clip_agree, still_agree = Agreement(), Agreement()
            truth = {"FP32": Truth(), "INT8": Truth()}
            for (meta, jpeg), sample_row in zip(jpegs, samples, strict=True):
                f = fp32.run_sync(meta, jpeg).detections
                q = int8.run_sync(meta, jpeg).detections
                (clip_agree if meta.stream.startswith("clip-") else still_agree).add(f, q)
                if kind in TRUTH:
                    truth["FP32"].add(sample_row[4], f)
                    truth["INT8"].add(sample_row[4], q)
            for where, ag in (("sample clip", clip_agree), ("stills", still_agree)):
                agree_rows.append([
                    int8_cfg.name, where, str(len(ag.ious)),
                    f"{np.mean(ag.ious):.3f} / {min(ag.ious):.3f}" if ag.ious else "-",
                    f"{np.mean(ag.deltas):.4f} / {max(ag.deltas):.4f}" if ag.deltas else "-",
                    str(ag.misses), str(ag.extras),
                ])  # fmt: skip
            if kind in TRUTH:
                for tag in ("FP32", "INT8"):
                    t = truth[tag]
                    name = fp32_cfg.name if tag == "FP32" else int8_cfg.name
                    truth_rows.append([name, tag, str(t.found), str(t.missed), str(t.false)])
        finally:
            fp32.close()
            int8.close()

    table("throughput per core: frames per CPU-second (median of rounds; INT8/FP32 per round), "
          "and wall-clock frames/s on the pinned core",
          ["models", "what", "FP32", "INT8", "INT8/FP32", "wall FP32 / INT8"], speed_rows)
    table(f"agreement INT8 vs FP32 (match: IoU >= {MATCH_IOU})",
          ["INT8 model", "frames", "matched", "IoU mean / min", "|Δscore| mean / max",
           "misses", "extras"], agree_rows)  # fmt: skip
    table(f"against ground truth ({a.frames} clip frames + astronaut, coffee, rocket)",
          ["model", "precision", "found", "missed", "false"], truth_rows)
    print(f"\n# load {load()} at end")


if __name__ == "__main__":
    main()
