"""The dev broker's process (deploy/kafka/kafka.sh), for benchmarks that share its machine: where
it runs and at what priority, so a bench can keep it off the cores it measures or behind them."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from evi.settings import REPO_ROOT


def broker_pid() -> int:
    """The pid kafka.sh wrote for the broker it started."""
    cache = Path(os.environ.get("EVI_CACHE_DIR", REPO_ROOT / ".cache"))
    return int((cache / "kafka" / "kafka.pid").read_text())


def _each_thread(pid: int, act: Callable[[int], None]) -> None:
    """A JVM's threads are not all children of its main one: act on every task of the pid."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(ProcessLookupError):  # a thread that just ended
            act(int(tid))


def pin(pid: int, cpus: frozenset[int]) -> None:
    _each_thread(pid, lambda tid: os.sched_setaffinity(tid, cpus))


def renice(pid: int, nice: int) -> None:
    _each_thread(pid, lambda tid: os.setpriority(os.PRIO_PROCESS, tid, nice))


@contextlib.contextmanager
def broker_placed(cpus: frozenset[int] | None = None, nice: int | None = None) -> Iterator[int]:
    """The broker on `cpus` and/or at `nice` for the block; all CPUs and nice 0 afterwards.
    Threads the broker starts meanwhile inherit from the thread that starts them."""
    pid = broker_pid()
    if cpus is not None:
        pin(pid, cpus)
    if nice is not None:
        renice(pid, nice)
    try:
        yield pid
    finally:
        if cpus is not None:
            pin(pid, frozenset(range(os.cpu_count() or 1)))
        if nice is not None:
            renice(pid, 0)
