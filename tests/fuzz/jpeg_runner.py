"""The JPEG fuzz loop, run in a child process so that a native crash (abort, segfault inside
libjpeg-turbo) or a hang costs the child, not the test: before each case the child writes the
case (its number, target and bytes) to a progress file, which the parent reads if the child dies.

    python -m tests.fuzz.jpeg_runner fuzz --seed S --start N --seconds T --max-cases M --work DIR
    python -m tests.fuzz.jpeg_runner one FILE --target 128      (one input; JSON on stdout)
    python -m tests.fuzz.jpeg_runner replay tests/fuzz/crashers.json     (decode_jpeg crashers)
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import resource
import sys
import time
from collections import Counter
from pathlib import Path

from tests.fuzz import contract
from tests.fuzz.contract import Broken, check_decode
from tests.fuzz.corpus import corpus
from tests.fuzz.mutate import case_rng, make_case, weights

ADDRESS_SPACE = 6 * 1024**3  # a runaway allocation fails in the child instead of the machine


def signature(kind: str, detail: str) -> str:
    """Findings that differ only in numbers are one finding."""
    return f"{kind}: {re.sub(r'[0-9]+', 'N', detail)[:100]}"


class Progress:
    """The case about to run, rewritten in place before each case (no fsync: the page cache
    survives the child's death)."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)

    def write(self, case: int, target: str, steps: list[str], data: bytes) -> None:
        head = json.dumps({"case": case, "target": target, "steps": steps}).encode() + b"\n"
        blob = head + data
        os.pwrite(self.fd, blob, 0)
        os.ftruncate(self.fd, len(blob))


def read_progress(path: Path) -> tuple[dict[str, object], bytes] | None:
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        return None
    head, _, data = blob.partition(b"\n")
    try:
        return json.loads(head), data
    except ValueError:
        return None


def fuzz(args: argparse.Namespace) -> int:
    work = Path(args.work)
    files = [data for _, data in corpus()]
    cum = weights(files)
    names = list(contract.TARGET_WEIGHTS)
    target_cum = []
    total = 0
    for n in names:
        total += contract.TARGET_WEIGHTS[n]
        target_cum.append(total)
    progress = Progress(work / "progress.bin")
    findings: dict[str, dict[str, object]] = {}
    outcomes: Counter[str] = Counter()
    targets: Counter[str] = Counter()
    steps_seen: Counter[str] = Counter()
    slowest = (0.0, -1, "")
    t0 = time.monotonic()
    deadline = t0 + args.seconds
    case = args.start
    end = args.start + args.max_cases
    # The seed corpus itself first, at every target, then mutated cases.
    seeds = [(name, data) for name, data in corpus()] if args.start == 0 else []
    i = 0
    while case < end and time.monotonic() < deadline:
        if i < len(seeds) * len(names):
            name, data = seeds[i // len(names)]
            target, steps = names[i % len(names)], [f"seed:{name}"]
            i += 1
            label = f"seed-{i}"
        else:
            rng = case_rng(args.seed, case)
            data, steps = make_case(rng, files, cum)
            target = rng.choices(names, cum_weights=target_cum)[0]
            label = str(case)
            case += 1
        progress.write(int(label) if label.isdigit() else -i, target, steps, data)
        if label == str(args.abort_at):  # the harness's own test: a native crash, simulated
            os.abort()
        targets[target] += 1
        if not steps[0].startswith("seed:"):
            steps_seen.update(steps)
        try:
            out = check_decode(data, target)
        except Broken as broken:
            outcomes[f"BROKEN {broken.kind}"] += 1
            sig = signature(broken.kind, broken.detail)
            f = findings.get(sig)
            if f is None or len(data) < len(base64.b64decode(str(f["b64"]))):
                findings[sig] = {
                    "signature": sig, "kind": broken.kind, "detail": broken.detail,
                    "case": label, "target": target, "steps": steps,
                    "b64": base64.b64encode(data).decode(), "count": (f or {}).get("count", 0),
                }  # fmt: skip
            findings[sig]["count"] = int(str(findings[sig]["count"])) + 1
            continue
        outcomes[out.label] += 1
        if out.seconds > slowest[0]:
            slowest = (out.seconds, int(label) if label.isdigit() else -1, target)
    elapsed = time.monotonic() - t0
    summary = {
        "seed": args.seed, "start": args.start, "next": case, "cases": sum(targets.values()),
        "seconds": elapsed, "outcomes": dict(outcomes), "targets": dict(targets),
        "mutations": dict(steps_seen), "slowest": slowest, "peak_mib": contract.RSS.peak_mib(),
        "findings": list(findings.values()),
    }  # fmt: skip
    (work / "summary.json").write_text(json.dumps(summary))
    return 0


def one(args: argparse.Namespace) -> int:
    """One input at one target: its outcome, time and RSS growth, as JSON."""
    data = Path(args.file).read_bytes()
    before = contract.RSS.now_mib()
    contract.RSS.reset_peak()
    try:
        out = check_decode(data, args.target)
        doc = {"outcome": out.label, "seconds": out.seconds, "broken": None}
    except Broken as broken:
        doc = {"outcome": None, "seconds": None, "broken": str(broken)}
    doc["rss_growth_mib"] = contract.RSS.peak_mib() - before
    print(json.dumps(doc))
    return 0


def replay(args: argparse.Namespace) -> int:
    """Every decode_jpeg crasher of a crashers.json at every target; the broken ones as JSON."""
    broken = []
    for entry in json.loads(Path(args.file).read_text()):
        if entry["contract"] != "decode_jpeg":
            continue
        data = base64.b64decode(entry["b64"])
        for target in contract.TARGETS:
            try:
                check_decode(data, target)
            except Broken as e:
                broken.append({"name": entry["name"], "target": target, "broken": str(e)})
    print(json.dumps(broken))
    return 0


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.fuzz.jpeg_runner")
    sub = p.add_subparsers(dest="command", required=True)
    f = sub.add_parser("fuzz")
    f.add_argument("--seed", type=int, required=True)
    f.add_argument("--start", type=int, default=0)
    f.add_argument("--seconds", type=float, required=True)
    f.add_argument("--max-cases", type=int, required=True)
    f.add_argument("--work", required=True)
    f.add_argument("--abort-at", type=int, default=-1, help=argparse.SUPPRESS)
    o = sub.add_parser("one")
    o.add_argument("file")
    o.add_argument("--target", default="128", choices=sorted(contract.TARGETS))
    sub.add_parser("replay").add_argument("file")
    args = p.parse_args(argv)
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))
    return {"fuzz": fuzz, "one": one, "replay": replay}[args.command](args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
