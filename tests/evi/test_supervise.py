"""evi/supervise.py: crashed children come back after doubling delays, a child that keeps
crashing is given up on, and stop() ends everything; real child processes, a fake clock."""

from __future__ import annotations

import io
import re
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

from evi.supervise import Child, GaveUp, RestartPolicy, StatusReport, Supervisor

CRASH = [sys.executable, "-c", "import sys; sys.exit(3)"]
SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]
# Exits 3 at once the first time, then sleeps: a child that recovers after one restart.
ONCE = [sys.executable, "-c", "import os, sys, time\n"
        "flag = sys.argv[1]\n"
        "if not os.path.exists(flag):\n    open(flag, 'w').close()\n    sys.exit(3)\n"
        "time.sleep(60)"]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def supervisor(policy: RestartPolicy | None = None) -> tuple[Supervisor, Clock, list[str]]:
    clock, seen = Clock(), []

    def record(sup: Supervisor, child: Child) -> None:
        seen.append(f"{child.name} {child.describe(clock())}")

    sup = Supervisor(policy or RestartPolicy(), clock=clock, on_change=record)
    return sup, clock, seen


def wait_exit(child: Child, timeout: float = 20.0) -> None:
    """A real child's exit, bounded: Python's start-up on a loaded machine takes a while."""
    child.proc.wait(timeout)


def crash_cycle(sup: Supervisor, clock: Clock, name: str) -> float:
    """Let the child's current process exit, note it at `clock.now`, return the restart delay."""
    wait_exit(sup.children[name])
    sup.check()
    child = sup.children[name]
    assert child.state == "restarting"
    return child.restart_at - clock.now


def test_the_delays_double_per_crash_in_a_row_and_are_capped() -> None:
    p = RestartPolicy(first_delay_s=1.0, max_delay_s=6.0)
    assert [p.delay(n) for n in range(1, 6)] == [1.0, 2.0, 4.0, 6.0, 6.0]


def test_a_crashing_child_is_restarted_with_doubling_delays_then_given_up_on() -> None:
    policy = RestartPolicy(first_delay_s=1.0, max_delay_s=4.0, max_restarts=3, window_s=100.0)
    sup, clock, seen = supervisor(policy)
    try:
        sup.start("processor-face", CRASH)
        delays = []
        for _ in range(3):
            delays.append(crash_cycle(sup, clock, "processor-face"))
            clock.now += delays[-1] - 0.01
            sup.check()  # not due yet
            assert sup.children["processor-face"].state == "restarting"
            clock.now += 0.01
            sup.check()  # due: started again
            assert sup.children["processor-face"].state == "running"
        assert delays == [1.0, 2.0, 4.0]
        assert sup.children["processor-face"].restarts == 3
        wait_exit(sup.children["processor-face"])
        with pytest.raises(GaveUp, match=r"processor-face exited with code 3 after 3 restarts "
                                         r"within 100s: giving up"):
            sup.check()
        assert sup.children["processor-face"].state == "exited"
        assert sup.exited() == ("processor-face", 3)
        assert seen[:3] == [
            f"processor-face running (pid {seen[0].split('pid ')[1][:-1]})",
            "processor-face restarting in 1s (exited 3)",
            seen[2],
        ]
        assert seen[2].startswith("processor-face running (pid ") and seen[2].endswith(
            ", 1 restart)")
        assert seen[-1] == "processor-face exited 3"
        assert len(seen) == 1 + 3 * 2 + 1  # started, 3 x (restarting, running), gave up
    finally:
        sup.stop(5)


def test_restarts_older_than_the_window_do_not_count_towards_giving_up() -> None:
    policy = RestartPolicy(first_delay_s=1.0, max_restarts=1, window_s=30.0,
                           healthy_after_s=10.0)
    sup, clock, _ = supervisor(policy)
    try:
        sup.start("producer", CRASH)
        for _ in range(3):  # one restart per window is allowed, forever
            delay = crash_cycle(sup, clock, "producer")
            assert delay == 1.0  # each crash came after 31 s up: the delays start over
            clock.now += delay
            sup.check()
            clock.now += 31.0
        assert sup.children["producer"].restarts == 3
    finally:
        sup.stop(5)


def test_a_child_that_recovers_keeps_running_and_the_others_are_untouched(
    tmp_path: Path,
) -> None:
    sup, clock, seen = supervisor(RestartPolicy(first_delay_s=0.5))
    flag = f"{tmp_path}/crashed-once"
    try:
        gateway = sup.start("gateway", SLEEPER)
        sup.start("processor-face", [*ONCE, flag])
        assert crash_cycle(sup, clock, "processor-face") == 0.5
        assert "processor-face restarting in 0.5s (exited 3)" in seen
        clock.now += 0.5
        sup.check()
        worker = sup.children["processor-face"]
        assert worker.state == "running" and worker.restarts == 1
        time.sleep(0.5)
        clock.now += 20.0
        sup.check()
        assert worker.state == "running" and worker.proc.poll() is None
        assert sup.children["gateway"].proc is gateway.proc and gateway.proc.poll() is None
        assert sup.exited() is None
    finally:
        sup.stop(5)
    assert worker.proc.returncode == -15 and gateway.proc.returncode == -15  # SIGTERM, once


def test_stop_ends_running_children_and_cancels_pending_restarts() -> None:
    sup, clock, _ = supervisor()
    a = sup.start("gateway", SLEEPER)
    b = sup.start("producer", SLEEPER)
    c = sup.start("processor-face", CRASH)
    crash_cycle(sup, clock, "processor-face")
    started = time.monotonic()
    sup.stop(10)
    assert time.monotonic() - started < 10
    assert (a.proc.returncode, b.proc.returncode) == (-15, -15)
    assert [x.state for x in (a, b, c)] == ["stopped", "stopped", "stopped"]
    clock.now += 100
    sup.check()  # nothing is started after stop
    assert c.restarts == 0 and c.state == "stopped"


def test_a_retired_child_is_stopped_and_not_restarted() -> None:
    sup, clock, _ = supervisor()
    try:
        worker = sup.start("processor-face-2", SLEEPER)
        sup.retire("processor-face-2")
        worker.proc.wait(10)
        clock.now += 100
        sup.check()
        assert "processor-face-2" not in sup.children and worker.restarts == 0
        assert worker.proc.returncode == -15
    finally:
        sup.stop(5)


def test_a_name_is_supervised_once() -> None:
    sup, _, _ = supervisor()
    try:
        sup.start("gateway", SLEEPER)
        with pytest.raises(ValueError, match="gateway is already supervised"):
            sup.start("gateway", SLEEPER)
    finally:
        sup.stop(5)


def test_the_report_is_one_plain_line_per_change_off_a_terminal(
    capsys: pytest.CaptureFixture[str],
) -> None:
    clock = Clock()
    sup = Supervisor(clock=clock, on_change=StatusReport(Console(file=io.StringIO())))
    try:
        child = sup.start("processor-face", CRASH)
        wait_exit(child)
        sup.check()
    finally:
        sup.stop(5)
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"evi dev: processor-face running (pid {child.proc.pid})",
                     "evi dev: processor-face restarting in 1s (exited 3)"]


def test_the_report_shows_every_child_on_one_line_on_a_terminal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CI", raising=False)
    clock, buf = Clock(), io.StringIO()
    screen = Console(file=buf, force_terminal=True, width=200, color_system="standard")
    sup = Supervisor(clock=clock, on_change=StatusReport(screen))
    try:
        gw = sup.start("gateway", SLEEPER)
        child = sup.start("processor-face", CRASH)
        wait_exit(child)
        sup.check()
    finally:
        sup.stop(5)
    last = buf.getvalue().splitlines()[-1]
    text = re.sub(r"\x1b\[[0-9;]*m", "", last)
    assert "\x1b[" in last
    assert "gateway" in text and f"running (pid {gw.proc.pid})" in text
    assert "processor-face" in text and "restarting in 1s (exited 3)" in text
    assert len(buf.getvalue().splitlines()) == 3  # one line per change: 2 starts, 1 exit


def test_with_a_log_dir_each_run_of_a_child_appends_to_its_log(tmp_path: Path) -> None:
    talk = [sys.executable, "-c", "import os, sys; print('run', os.environ['RUN_TAG']); "
            "sys.exit(3)"]
    clock = Clock()
    sup = Supervisor(clock=clock, log_dir=tmp_path / "logs", env={"RUN_TAG": "A"})
    try:
        sup.start("processor-face", talk)
        for _ in range(2):
            wait_exit(sup.children["processor-face"])
            sup.check()
            clock.now = sup.children["processor-face"].restart_at
            sup.check()
        wait_exit(sup.children["processor-face"])
    finally:
        sup.stop(5)
    assert (tmp_path / "logs" / "processor-face.log").read_text().splitlines() == ["run A"] * 3
