"""evi/progress.py: a bar on a terminal, nothing at all otherwise (pipes, logs, CI)."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from evi.progress import progress, shown


def terminal(buf: io.StringIO) -> Console:
    return Console(file=buf, force_terminal=True, width=100, color_system="standard")


def test_a_terminal_gets_the_bar_with_its_description_and_count(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CI", raising=False)
    buf = io.StringIO()
    with progress("recording evi.frames.face", console=terminal(buf)) as task:
        task.update(total=40)
        for _ in range(25):
            task.advance()
    out = buf.getvalue()
    assert "recording evi.frames.face" in out
    assert "25/40" in out  # the last frame drawn, when the bar stops
    assert "\x1b[" in out  # drawn with escape codes: what a pipe must never get


def test_a_file_that_is_not_a_terminal_gets_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    buf = io.StringIO()
    with progress("fetching models", total=3, console=Console(file=buf)) as task:
        task.advance(3)
        task.update(description="done")
    assert buf.getvalue() == ""


@pytest.mark.parametrize(("ci", "drawn"), [("true", False), ("1", False), ("false", True),
                                           ("", True)])
def test_ci_turns_the_bar_off_even_on_a_terminal(ci: str, drawn: bool) -> None:
    assert shown(terminal(io.StringIO()), {"CI": ci}) is drawn
    assert shown(terminal(io.StringIO()), {}) is True
    assert shown(Console(file=io.StringIO()), {}) is False


def test_under_ci_a_forced_terminal_stays_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    buf = io.StringIO()
    with progress("quantizing", total=2, console=terminal(buf)) as task:
        task.advance(2)
    assert buf.getvalue() == ""
