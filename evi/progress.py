"""Progress bars for long command-line work (record, replay, models fetch/quantize), on stderr.

Only a person at a terminal sees them: when stderr is not a TTY (a pipe, a log file, `evi dev`
reading a child) or CI is set, `progress()` hands out a task that does nothing, so scripts and
logs never get cursor escape codes. A piped stdout is never touched: several commands print one
line per result there for other programs to read (`evi models quantize` for `evi dev`)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

_CI_OFF = {"", "0", "false", "no"}


def shown(console: Console, env: Mapping[str, str] | None = None) -> bool:
    """Whether a bar is drawn on `console`: a terminal (or one forced, as tests do) outside CI."""
    env = os.environ if env is None else env
    return console.is_terminal and env.get("CI", "").strip().lower() in _CI_OFF


class Task:
    """One bar; every method is a no-op when progress is not shown."""

    def __init__(self, bar: Progress | None = None, task: TaskID | None = None) -> None:
        self._bar, self._task = bar, task

    def advance(self, n: float = 1) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.advance(self._task, n)

    def update(self, *, total: float | None = None, completed: float | None = None,
               description: str | None = None) -> None:
        if self._bar is not None and self._task is not None:
            # A new step's name is drawn at once, not at the next tick: it says what is slow.
            self._bar.update(self._task, total=total, completed=completed,
                             description=description, refresh=description is not None)


@contextmanager
def progress(description: str, total: float | None = None, *,
             console: Console | None = None) -> Iterator[Task]:
    """A bar for one piece of work (`total=None`: a spinner and the time so far, until a total
    is known through `Task.update`). The bar is removed when the work ends: the command's own
    summary line stays the record of what was done."""
    console = console or Console(stderr=True)
    if not shown(console):
        yield Task()
        return
    bar = Progress(
        SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
        console=console, transient=True,
        # stdout on the same terminal: its lines go above the bar. Piped, they are data: untouched.
        redirect_stdout=sys.stdout.isatty(),
    )  # fmt: skip
    with bar:
        yield Task(bar, bar.add_task(description, total=total))
