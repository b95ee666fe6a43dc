"""`evi dev`: the whole pipeline on one machine — Kafka, topics, model, the sample producer, one
processor per kind and the gateway — as child processes, stopped together on Ctrl-C."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

from evi.cli import KAFKA_SCRIPT
from evi.settings import REPO_ROOT


@dataclass
class Children:
    procs: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)

    def start(self, name: str, *args: str) -> None:
        cmd = [sys.executable, "-m", "evi.cli", *args]
        print(f"evi dev: starting {name}: {' '.join(cmd[2:])}", flush=True)
        self.procs.append((name, subprocess.Popen(cmd, cwd=REPO_ROOT)))

    def exited(self) -> tuple[str, int] | None:
        for name, p in self.procs:
            if p.poll() is not None:
                return name, p.returncode
        return None

    def stop(self, timeout: float = 15.0) -> None:
        for _, p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for name, p in self.procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                print(f"evi dev: {name} did not stop in time; killing it", flush=True)
                p.kill()


def run(cmd: list[str]) -> None:
    subprocess.run(cmd, check=True, cwd=REPO_ROOT)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="evi dev", description=__doc__)
    p.add_argument("--kind", action="append", dest="kinds", help="kinds to run (default face)")
    p.add_argument("--port", type=int, default=int(os.environ.get("EVI_PORT", "8000")))
    p.add_argument("--fps", type=float, default=15.0, help="sample stream frame rate")
    p.add_argument("--streams", type=int, default=1, help="number of sample streams")
    a = p.parse_args(argv)
    kinds = a.kinds or ["face"]
    py = [sys.executable, "-m", "evi.cli"]
    run(["bash", str(KAFKA_SCRIPT), "start"])
    run([*py, "kafka", "topics", *[f"--kind={k}" for k in kinds]])
    run([*py, "models", "fetch"])
    children = Children()
    stop = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        for k in kinds:
            children.start(f"processor-{k}", "process", "--kind", k, "--web-port", "0")
        children.start("gateway", "gateway", "--port", str(a.port), *[f"--kind={k}" for k in kinds])
        for i in range(a.streams):
            children.start(
                f"producer-{i}", "produce", "--source", "sample:", "--stream", f"sample-{i + 1}",
                *[f"--kind={k}" for k in kinds], "--fps", str(a.fps), "--loop",
            )
        print(f"\nevi dev: dashboard at http://127.0.0.1:{a.port}/  (Ctrl-C stops everything)\n",
              flush=True)
        while not stop:
            gone = children.exited()
            if gone:
                print(f"evi dev: {gone[0]} exited with code {gone[1]}; stopping", flush=True)
                return 1
            time.sleep(0.5)
        return 0
    finally:
        children.stop()
        print("evi dev: stopped (Kafka keeps running: `evi kafka stop` stops it)", flush=True)
