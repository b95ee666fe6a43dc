"""Child processes kept running as compose's `restart: unless-stopped` keeps containers running.

A child that exits without being asked to is started again after a delay that doubles with each
crash in a row (Docker's restart policy: the delay doubles, is capped, and starts over once the
container has run 10 s). One bound compose does not have: a child restarted `max_restarts` times
within `window_s` that exits again is given up on (`GaveUp`), so one that can never run (bad
config, a port taken) ends `evi dev` with its name and exit code instead of looping forever.

Time is read from an injected clock and nothing here sleeps: the caller polls `check()`, which
tests drive with a fake clock."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal

from rich.console import Console
from rich.markup import escape

from evi.progress import shown

State = Literal["running", "restarting", "exited", "stopped"]


@dataclass(frozen=True)
class RestartPolicy:
    first_delay_s: float = 1.0  # Docker starts at 0.1 s; a Python service takes ~1 s to start
    max_delay_s: float = 30.0  # Docker caps at 60 s; 30 s keeps `evi dev` responsive
    healthy_after_s: float = 10.0  # up this long: the next crash starts the delays over
    max_restarts: int = 5  # restarts within window_s before the next exit gives up
    window_s: float = 120.0

    def delay(self, crashes_in_a_row: int) -> float:
        """Wait before restarting after the n-th crash in a row: 1, 2, 4, 8 ... s, capped."""
        return min(self.max_delay_s, self.first_delay_s * 2.0 ** max(0, crashes_in_a_row - 1))


@dataclass
class Child:
    name: str
    cmd: list[str]
    env: dict[str, str] | None
    proc: subprocess.Popen[bytes]
    started: float
    state: State = "running"
    code: int | None = None  # the last exit code
    restart_at: float = 0.0
    restarts: int = 0
    crashes_in_a_row: int = 0
    recent: deque[float] = field(default_factory=deque)  # restart times within the window

    def describe(self, now: float) -> str:
        """`running (pid 12)`, `restarting in 2s (exited -9)`, `exited 3`, `stopped`."""
        again = f", {self.restarts} restart{'s' * (self.restarts != 1)}" if self.restarts else ""
        if self.state == "running":
            return f"running (pid {self.proc.pid}{again})"
        if self.state == "restarting":
            wait = max(0.0, self.restart_at - now)
            return f"restarting in {wait:.3g}s (exited {self.code}{again})"
        return f"exited {self.code}" if self.state == "exited" else "stopped"


class GaveUp(RuntimeError):
    def __init__(self, child: Child, policy: RestartPolicy) -> None:
        super().__init__(
            f"{child.name} exited with code {child.code} after {len(child.recent)} restarts "
            f"within {policy.window_s:.0f}s: giving up")
        self.child = child


OnChange = Callable[["Supervisor", Child], None]


@dataclass
class Supervisor:
    """Start named commands, restart those that exit, stop them all; `check()` does the work."""

    policy: RestartPolicy = field(default_factory=RestartPolicy)
    cwd: Path | None = None
    log_dir: Path | None = None  # None: children write to our stdout and stderr
    env: dict[str, str] | None = None  # over os.environ, for every child
    clock: Callable[[], float] = time.monotonic
    on_change: OnChange | None = None
    label: str = "evi dev"
    children: dict[str, Child] = field(default_factory=dict)
    retired: list[Child] = field(default_factory=list)
    _logs: list[IO[bytes]] = field(default_factory=list)

    def start(self, name: str, cmd: Sequence[str], env: dict[str, str] | None = None) -> Child:
        if name in self.children:
            raise ValueError(f"a child named {name} is already supervised")
        child = Child(name, list(cmd), env, self._spawn(name, cmd, env), self.clock())
        self.children[name] = child
        self._changed(child)
        return child

    def _spawn(self, name: str, cmd: Sequence[str], env: dict[str, str] | None
               ) -> subprocess.Popen[bytes]:
        out = None
        if self.log_dir:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            out = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - closed in stop()
            self._logs.append(out)
        merged = {**os.environ, **(self.env or {}), **(env or {})} if self.env or env else None
        # Own session: a terminal's Ctrl-C reaches only the supervisor, which then sends each
        # child one SIGTERM (a second signal would make a processor exit without its final commit).
        return subprocess.Popen(list(cmd), cwd=self.cwd, stdout=out,
                                stderr=subprocess.STDOUT if out else None, env=merged,
                                start_new_session=True)

    def retire(self, name: str) -> None:
        """SIGTERM one child (it drains and leaves its group); it is no longer restarted."""
        child = self.children.pop(name)
        if child.state == "running" and child.proc.poll() is None:
            child.proc.send_signal(signal.SIGTERM)
        child.state = "stopped"
        self.retired.append(child)

    def check(self) -> None:
        """Notice exits, restart what is due; GaveUp when a child exhausted its restarts."""
        now = self.clock()
        for child in list(self.children.values()):
            if child.state == "running":
                code = child.proc.poll()
                if code is not None:
                    self._exited(child, code, now)
            elif child.state == "restarting" and now >= child.restart_at:
                child.proc = self._spawn(child.name, child.cmd, child.env)
                child.started, child.state = now, "running"
                child.restarts += 1
                child.recent.append(now)
                self._changed(child)

    def _exited(self, child: Child, code: int, now: float) -> None:
        child.code = code
        quick = now - child.started < self.policy.healthy_after_s
        child.crashes_in_a_row = child.crashes_in_a_row + 1 if quick else 1
        while child.recent and now - child.recent[0] > self.policy.window_s:
            child.recent.popleft()
        if len(child.recent) >= self.policy.max_restarts:
            child.state = "exited"
            self._changed(child)
            raise GaveUp(child, self.policy)
        child.state = "restarting"
        child.restart_at = now + self.policy.delay(child.crashes_in_a_row)
        self._changed(child)

    def _changed(self, child: Child) -> None:
        if self.on_change is not None:
            self.on_change(self, child)

    def exited(self) -> tuple[str, int] | None:
        """A child that is not running now, with its last exit code."""
        for child in self.children.values():
            if child.state in ("restarting", "exited") and child.code is not None:
                return child.name, child.code
        return None

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM every running child (last started first), wait, kill what is left."""
        running = [c for c in reversed(self.children.values()) if c.state == "running"]
        for child in running:
            if child.proc.poll() is None:
                child.proc.send_signal(signal.SIGTERM)
        for child in self.children.values():
            child.state = "stopped" if child.state != "exited" else child.state
        deadline = time.monotonic() + timeout
        for child in running + self.retired:
            try:
                child.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                print(f"{self.label}: {child.name} did not stop in time; killing it", flush=True)
                child.proc.kill()
                child.proc.wait(5)
        for f in self._logs:
            f.close()
        self._logs.clear()


COLOURS: dict[State, str] = {"running": "green", "restarting": "yellow", "exited": "red",
                             "stopped": "dim"}


@dataclass
class StatusReport:
    """An `on_change` that shows each child's state: on a terminal one coloured line with every
    child after each change (children write to the same terminal, so no line redraws itself);
    elsewhere one plain line for the child that changed, for logs and tests to read."""

    console: Console = field(default_factory=Console)
    label: str = "evi dev"

    def __call__(self, sup: Supervisor, child: Child) -> None:
        now = sup.clock()
        if shown(self.console):
            states = "  ".join(f"[{COLOURS[c.state]}]{escape(c.name)}[/] {escape(c.describe(now))}"
                               for c in sup.children.values())
            self.console.print(f"[bold]{self.label}[/]: {states}", highlight=False)
        else:
            print(f"{self.label}: {child.name} {child.describe(now)}", flush=True)
