"""Mutation fuzzing of processors.decode.decode_jpeg: tens of thousands of mutated JPEGs (from
a seed corpus made by recipe, tests/fuzz/corpus.py) at several decode targets; the contract is
RGB u8 [H,W,3] or BadFrame, within 2 s and 256 MiB a frame (tests/fuzz/contract.py).

The loop runs in a child (tests/fuzz/jpeg_runner.py) so that a native crash or a hang is a
finding with its input, not a dead test run. Inputs that broke the contract are written to
test-artifacts/fuzz/; add the small ones to tests/fuzz/crashers.json.
Reproduce a run: EVI_FUZZ_SEED=<seed printed> EVI_FUZZ_SECONDS=<s> pytest tests/fuzz -k jpeg -s
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from evi.settings import REPO_ROOT
from tests.fuzz import budget
from tests.fuzz.jpeg_runner import read_progress

ARTIFACTS = REPO_ROOT / "test-artifacts" / "fuzz"
MAX_RESTARTS = 5  # after this many child deaths the run stops: the findings are enough


def run_child(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "tests.fuzz.jpeg_runner", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1"}
    try:
        return subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                              timeout=timeout, check=False)  # fmt: skip
    except subprocess.TimeoutExpired as e:  # run() has killed the child
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else e.stdout or ""
        err = e.stderr.decode() if isinstance(e.stderr, bytes) else e.stderr or ""
        return subprocess.CompletedProcess(cmd, -signal.SIGKILL, out, err + "\n(timed out)")


def save(findings: list[dict[str, Any]], seed: int) -> list[Path]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, f in enumerate(findings):
        path = ARTIFACTS / f"jpeg-seed{seed}-{i}-{f['kind']}.jpg"
        path.write_bytes(base64.b64decode(f["b64"]))
        path.with_suffix(".json").write_text(json.dumps({k: v for k, v in f.items()
                                                         if k != "b64"}, indent=1))  # fmt: skip
        paths.append(path)
    return paths


def fuzz_in_children(
    seed: int, seconds: float, max_cases: int, work: Path, extra: tuple[str, ...] = ()
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Run the fuzz loop in children until the time is spent, a new child after each one that
    dies; the children's summaries and every finding (a dead child's from its progress file)."""
    findings: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    start, deaths = 0, 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline - 1 and deaths <= MAX_RESTARTS:
        left = deadline - time.monotonic()
        summary_path = work / "summary.json"
        summary_path.unlink(missing_ok=True)
        args = ["fuzz", "--seed", str(seed), "--start", str(start), "--seconds", f"{left:.1f}",
                "--max-cases", str(max_cases - start), "--work", str(work), *extra]  # fmt: skip
        proc = run_child(args, timeout=left + 60)  # + corpus generation and one slow case
        if proc.returncode == 0 and summary_path.exists():
            summary = json.loads(summary_path.read_text())
            runs.append(summary)
            findings += summary["findings"]
            break
        # The child died (a signal, an abort) or hung: the progress file has the input.
        deaths += 1
        progress = read_progress(work / "progress.bin")
        assert progress is not None, f"the fuzz child failed before its first case:\n{proc.stderr}"
        where, data = progress
        kind = "hang" if proc.returncode == -signal.SIGKILL else "crash"
        findings.append({
            "signature": f"{kind}: child exit {proc.returncode}", "kind": kind,
            "detail": proc.stderr[-2000:], "case": where["case"], "target": where["target"],
            "steps": where["steps"], "b64": base64.b64encode(data).decode(), "count": 1,
        })  # fmt: skip
        case = int(str(where["case"]))
        start = case + 1 if case >= 0 else 0
    return runs, findings


def test_decode_jpeg_keeps_its_contract_on_mutated_jpegs(tmp_path: Path) -> None:
    seed = budget.seed()
    seconds = budget.seconds(40)
    max_cases = int(400_000 * budget.scale())
    print(f"\njpeg fuzz: EVI_FUZZ_SEED={seed}, {seconds:.0f} s, at most {max_cases} cases")
    runs, findings = fuzz_in_children(seed, seconds, max_cases, tmp_path)
    for r in runs:
        print(f"  {r['cases']} cases in {r['seconds']:.1f} s = {r['cases'] / r['seconds']:.0f}"
              f" cases/s; outcomes {r['outcomes']}; targets {r['targets']}; slowest case "
              f"{r['slowest'][0]:.3f} s; child peak RSS {r['peak_mib']:.0f} MiB")  # fmt: skip
    if findings:
        paths = save(findings, seed)
        lines = [
            f"  {f['signature']} (x{f['count']}, case {f['case']}, target {f['target']}, "
            f"mutations {f['steps']}) -> {p}"
            for f, p in zip(findings, paths, strict=True)
        ]
        pytest.fail(f"decode_jpeg broke its contract (EVI_FUZZ_SEED={seed}):\n" + "\n".join(lines))
    cases = sum(r["cases"] for r in runs)
    assert cases >= min(max_cases, 10_000 * budget.scale()), cases


def test_a_child_that_dies_leaves_the_input_that_killed_it(tmp_path: Path) -> None:
    """The harness itself: a child aborting at case 40 (as libjpeg-turbo might) is a finding
    with case 40's input; a new child goes on from case 41."""
    from tests.fuzz.corpus import corpus
    from tests.fuzz.mutate import case_rng, make_case, weights

    files = [d for _, d in corpus()]
    runs, findings = fuzz_in_children(7, 8, 200, tmp_path, ("--abort-at", "40"))
    crashes = [f for f in findings if f["kind"] == "crash"]
    assert [(f["case"], f["signature"]) for f in crashes] == [
        (40, f"crash: child exit {-signal.SIGABRT}")
    ]
    want, _ = make_case(case_rng(7, 40), files, weights(files))
    assert base64.b64decode(crashes[0]["b64"]) == want
    assert [(r["start"], r["next"]) for r in runs] == [(41, 200)]


# Real big frames, made by recipe in a child (the 8192² one costs ~400 MiB to make), decoded in
# another so its peak RSS is the decode's own.
REFUSED = {"too-large", "decode-budget"}


@pytest.fixture(scope="module")
def big_frames(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("big-jpegs")
    for recipe in ("progressive-8192", "progressive-4096", "baseline-8192", "baseline-4096"):
        subprocess.run([sys.executable, "-m", "tests.fuzz.corpus", str(out), recipe],
                       cwd=REPO_ROOT, check=True, timeout=120)  # fmt: skip
    return out


@pytest.mark.parametrize("target", ["128", "full"])
@pytest.mark.parametrize(
    "recipe", ["progressive-8192", "progressive-4096", "baseline-8192", "baseline-4096"]
)
def test_big_real_frames_are_refused_or_decoded_within_the_frame_bounds(
    big_frames: Path, recipe: str, target: str
) -> None:
    """A real 8192² progressive frame (~400 KB) must be refused by its header, cheaply: decoded,
    it costs ~0.9 s and ~390 MiB. The others: decoded or refused, within the bounds."""
    proc = run_child(["one", str(big_frames / f"{recipe}.jpg"), "--target", target], 60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"\n{recipe} at {target}: {doc}")
    assert doc["broken"] is None, doc["broken"]
    if recipe == "progressive-8192":
        assert doc["outcome"] in REFUSED, doc
        assert doc["seconds"] < 0.1 and doc["rss_growth_mib"] < 32, doc
