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
max), for models with keypoints the distance between a matched pair's corresponding keypoints
(mean and max over all, and each keypoint's mean; frame-normalised units, i.e. in (x / width,
y / height)), misses (FP32 boxes INT8 lacks), extras (INT8 boxes FP32 lacks).

Ground truth, per kind: face, the face's box in each sample-clip frame (SampleClip.placement
applied to the hand-measured astronaut face, tests/fixtures/faces.py), the astronaut picture (one
face), coffee and rocket (none); person, the astronaut's person box the same way in each clip
frame, the astronaut and camera pictures (one person each, tests/fixtures/people.py), coffee,
rocket and chelsea (none), with where keypoint 2 (mid-shoulder) must land. Per precision, clip
and stills apart: boxes found at IoU >= 0.5 (their IoU with the truth, mean and min), missed,
false detections, and how many found boxes put each checked keypoint in its measured region
(placed in clip frames as the box is, but not clipped: keypoints may lie past the frame's edge).
"""

from __future__ import annotations

import argparse
import math
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
from tests.fixtures.images import rgb_sample, sample
from tests.fixtures.people import (
    ASTRONAUT_PERSON,
    MID_SHOULDER,
    PICTURE_SIZE,
    person_normalised,
)

Box = tuple[float, float, float, float]
MATCH_IOU = 0.5
W, H = 640, 480
# The pose detector's keypoints: mid-hip, size/rotation point, mid-shoulder, a fourth (MediaPipe's).
MID_SHOULDER_KEYPOINT = 2


@dataclass(frozen=True)
class Target:
    """One true object: its box, and regions some of its keypoints must land in (index → box)."""

    box: Box
    points: dict[int, Box] = field(default_factory=dict)


@dataclass(frozen=True)
class Sample:
    """One JPEG and what it holds; `truth` None: no ground truth (compared FP32 to INT8 only)."""

    name: str
    jpeg: bytes
    width: int
    height: int
    truth: list[Target] | None

    @property
    def in_clip(self) -> bool:
        return self.name.startswith("clip-")


@dataclass
class Agreement:
    ious: list[float] = field(default_factory=list)
    deltas: list[float] = field(default_factory=list)
    keypoints: dict[int, list[float]] = field(default_factory=dict)  # index → distances
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
                pairs_k = zip(fp32[i].keypoints, int8[j].keypoints, strict=True)
                for k, (a, b) in enumerate(pairs_k):
                    self.keypoints.setdefault(k, []).append(math.dist(a, b))
        self.misses += len(fp32) - len(used_f)
        self.extras += len(int8) - len(used_q)

    def keypoint_summary(self) -> str:
        """Keypoint distance, all keypoints: mean / max; then each keypoint's mean, in order."""
        if not self.keypoints:
            return "-"
        every = [d for ds in self.keypoints.values() for d in ds]
        each = " ".join(f"{np.mean(self.keypoints[k]):.3f}" for k in sorted(self.keypoints))
        return f"{np.mean(every):.4f} / {max(every):.4f} (each: {each})"


@dataclass
class Truth:
    found: int = 0
    missed: int = 0
    false: int = 0
    ious: list[float] = field(default_factory=list)  # of the found boxes with their true ones
    points_in: int = 0  # checked keypoints of found boxes inside their region
    points_checked: int = 0

    def add(self, truth: Sequence[Target], got: Sequence[Detection]) -> None:
        free = list(got)
        for t in truth:
            best = max(free, key=lambda d: iou(t.box, box(d)), default=None)
            if best is not None and iou(t.box, box(best)) >= MATCH_IOU:
                self.found += 1
                self.ious.append(iou(t.box, box(best)))
                free.remove(best)
                for k, (x1, y1, x2, y2) in t.points.items():
                    x, y = best.keypoints[k]
                    self.points_checked += 1
                    self.points_in += x1 <= x <= x2 and y1 <= y <= y2
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


def placed(clip: SampleClip, i: int, px: tuple[int, int, int, int], clipped: bool = True
           ) -> Box | None:  # fmt: skip
    """An astronaut-pixel box in sample-clip frame i, normalised and (`clipped`) clipped to the
    frame; None when frame i has no astronaut or the clipped box falls outside the frame. A
    keypoint's region stays unclipped: keypoints may lie past the frame's edge."""
    place = clip.placement(i)
    if place is None:
        return None
    scale, dx, dy = place
    x1, y1, x2, y2 = px
    b = ((x1 * scale + dx) / clip.width, (y1 * scale + dy) / clip.height,
         (x2 * scale + dx) / clip.width, (y2 * scale + dy) / clip.height)  # fmt: skip
    if not clipped:
        return b
    b = (max(0.0, b[0]), max(0.0, b[1]), min(1.0, b[2]), min(1.0, b[3]))
    return b if b[0] < b[2] and b[1] < b[3] else None


def still(name: str, truth: list[Target] | None) -> Sample:
    image = np.ascontiguousarray(rgb_sample(name))
    h, w = image.shape[:2]
    return Sample(name, simplejpeg.encode_jpeg(image, 90, "RGB"), w, h, truth)


def clip_samples(frames: int, truth: Callable[[SampleClip, int], list[Target]] | None
                 ) -> list[Sample]:  # fmt: skip
    clip = SampleClip(W, H, frames)
    return [Sample(f"clip-{i}", simplejpeg.encode_jpeg(np.ascontiguousarray(clip.frame(i)), 80,
                                                       "BGR"),
                   W, H, None if truth is None else truth(clip, i))
            for i in range(frames)]  # fmt: skip


def clip_face(clip: SampleClip, i: int) -> list[Target]:
    b = placed(clip, i, ASTRONAUT_FACE)
    return [] if b is None else [Target(b)]


def face_truth(frames: int) -> list[Sample]:
    """The sample clip, then the still pictures, with the face's box."""
    return [*clip_samples(frames, clip_face),
            still("astronaut", [Target(astronaut_face_normalised())]),
            still("coffee", []), still("rocket", [])]  # fmt: skip


def shoulder_region(name: str) -> Box:
    """Where the mid-shoulder keypoint must land in picture `name`, normalised."""
    w, h = PICTURE_SIZE
    x1, y1, x2, y2 = MID_SHOULDER[name]
    return (x1 / w, y1 / h, x2 / w, y2 / h)


def clip_person(clip: SampleClip, i: int) -> list[Target]:
    b = placed(clip, i, ASTRONAUT_PERSON)
    if b is None:
        return []
    shoulder = placed(clip, i, MID_SHOULDER["astronaut"], clipped=False)
    return [Target(b, {} if shoulder is None else {MID_SHOULDER_KEYPOINT: shoulder})]


def person_truth(frames: int) -> list[Sample]:
    """The sample clip, then the still pictures, with the person's box and mid-shoulder."""
    people = [still(name, [Target(person_normalised(name),
                                  {MID_SHOULDER_KEYPOINT: shoulder_region(name)})])
              for name in ("astronaut", "camera")]  # fmt: skip
    return [*clip_samples(frames, clip_person), *people,
            *(still(name, []) for name in ("coffee", "rocket", "chelsea"))]


def no_truth(frames: int) -> list[Sample]:
    return [*clip_samples(frames, None),
            *(still(name, None) for name in ("astronaut", "coffee", "rocket"))]


# Ground truth by kind; a kind without any is compared FP32 to INT8 only (clip, two stills).
TRUTH: dict[str, Callable[[int], list[Sample]]] = {
    "face": face_truth,
    "person": person_truth,
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

    speed_rows: list[list[str]] = []
    agree_rows: list[list[str]] = []
    truth_rows: list[list[str]] = []
    for kind, int8_cfg in int8_models(catalog):
        fp32_cfg = next(m for m in catalog.choices(kind) if m.name == int8_cfg.quantize_from)
        samples = TRUTH.get(kind, no_truth)(a.frames)
        jpegs = [(FrameMeta(s.name, i, 0, s.width, s.height, producer="bench"), s.jpeg)
                 for i, s in enumerate(samples)]  # fmt: skip
        clip_jpegs = [j for j, s in zip(jpegs, samples, strict=True) if s.in_clip]
        stills = ", ".join(s.name for s in samples if not s.in_clip)
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
            agree = {True: Agreement(), False: Agreement()}  # by in_clip
            truth = {(tag, c): Truth() for tag in ("FP32", "INT8") for c in (True, False)}
            for (meta, jpeg), s in zip(jpegs, samples, strict=True):
                f = fp32.run_sync(meta, jpeg).detections
                q = int8.run_sync(meta, jpeg).detections
                agree[s.in_clip].add(f, q)
                if s.truth is not None:
                    truth["FP32", s.in_clip].add(s.truth, f)
                    truth["INT8", s.in_clip].add(s.truth, q)
            places = {True: f"sample clip ({a.frames} frames)", False: stills}
            for in_clip, ag in agree.items():
                agree_rows.append([
                    int8_cfg.name, places[in_clip], str(len(ag.ious)),
                    f"{np.mean(ag.ious):.3f} / {min(ag.ious):.3f}" if ag.ious else "-",
                    f"{np.mean(ag.deltas):.4f} / {max(ag.deltas):.4f}" if ag.deltas else "-",
                    ag.keypoint_summary(),
                    str(ag.misses), str(ag.extras),
                ])  # fmt: skip
            for (tag, in_clip), t in truth.items():
                if not any(s.truth is not None and s.in_clip == in_clip for s in samples):
                    continue  # no ground truth there
                truth_rows.append([
                    fp32_cfg.name if tag == "FP32" else int8_cfg.name, tag, places[in_clip],
                    f"{t.found} of {t.found + t.missed}", str(t.missed), str(t.false),
                    f"{np.mean(t.ious):.3f} / {min(t.ious):.3f}" if t.ious else "-",
                    f"{t.points_in} of {t.points_checked}" if t.points_checked else "-",
                ])  # fmt: skip
        finally:
            fp32.close()
            int8.close()

    table("throughput per core: frames per CPU-second (median of rounds; INT8/FP32 per round), "
          "and wall-clock frames/s on the pinned core",
          ["models", "what", "FP32", "INT8", "INT8/FP32", "wall FP32 / INT8"], speed_rows)
    table(f"agreement INT8 vs FP32 (match: IoU >= {MATCH_IOU}; keypoints: distance in "
          "frame-normalised units)",
          ["INT8 model", "on", "matched", "IoU mean / min", "|Δscore| mean / max",
           "keypoint distance mean / max (each)", "misses", "extras"], agree_rows)  # fmt: skip
    table(f"against ground truth (found: IoU >= {MATCH_IOU} with a true box)",
          ["model", "precision", "on", "found", "missed", "false", "IoU of found mean / min",
           "keypoint in its region"], truth_rows)  # fmt: skip
    print(f"\n# load {load()} at end")

if __name__ == "__main__":
    main()
