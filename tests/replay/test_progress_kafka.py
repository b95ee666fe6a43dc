"""Progress of `evi record` and `evi replay` on the real broker: drawn on stderr when stderr is a
terminal (a pseudo-terminal here), never an escape code when it is a pipe, and stdout keeps only
the summary line either way."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from evi.settings import KafkaSettings
from evi.topics import Topics
from producers.record import format_time
from tests.helpers import REPO
from tests.replay.util import common, evi, produce, read_all

pytestmark = pytest.mark.kafka

NO_CI = {"CI": "", "TERM": "xterm-256color"}  # the terminal check alone decides


def on_terminal(*args: str, timeout: float = 120) -> tuple[int, str, str]:
    """`evi <args>` with stderr on a pseudo-terminal and stdout on a pipe: (code, stdout, what
    the terminal received)."""
    master, slave = pty.openpty()
    screen = bytearray()

    def drain() -> None:
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the child closed the terminal
                return
            if not chunk:
                return
            screen.extend(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        done = subprocess.run([sys.executable, "-m", "evi.cli", *args], cwd=REPO,
                              stdout=subprocess.PIPE, stderr=slave, timeout=timeout,
                              env={**os.environ, **NO_CI}, check=False)
    finally:
        os.close(slave)
        reader.join(10)
        os.close(master)
    return done.returncode, done.stdout.decode(), screen.decode(errors="replace")


def window(kafka: KafkaSettings, topics: Topics) -> list[str]:
    produce(kafka, topics.prefix, ["cam-p"], count=40, fps=0)
    recs = read_all(kafka, topics.frames("face"))
    assert len(recs) == 40
    return ["--since", format_time(min(r.ts_ms for r in recs)),
            "--until", format_time(max(r.ts_ms for r in recs) + 1)]


def test_record_and_replay_draw_progress_on_a_terminal_only(
    kafka: KafkaSettings, topics: Topics, tmp_path: Path
) -> None:
    span = window(kafka, topics)
    clip = tmp_path / "cam-p.evi"
    flags = common(kafka, topics.prefix)
    code, out, screen = on_terminal("record", "--kind", "face", *span, "--out", str(clip), *flags)
    assert code == 0, screen
    assert out.startswith("recorded 40 frames (cam-p=40)") and "\x1b" not in out
    assert f"reading {topics.frames('face')}" in screen
    assert re.search(r"\d+/40", screen), screen  # the window's 40 records are the total
    assert "\x1b[" in screen

    code, out, screen = on_terminal("replay", str(clip), "--stream", "cam-p-again", "--speed",
                                    "max", *flags)
    assert code == 0, screen
    assert out.startswith("replayed 40 frames (cam-p->cam-p-again)") and "\x1b" not in out
    assert f"replaying to {topics.frames('face')}" in screen and "\x1b[" in screen


def test_record_and_replay_print_no_escape_codes_into_pipes(
    kafka: KafkaSettings, topics: Topics, tmp_path: Path
) -> None:
    span = window(kafka, topics)
    clip = tmp_path / "cam-p.evi"
    flags = common(kafka, topics.prefix)
    rec = evi("record", "--kind", "face", *span, "--out", str(clip), *flags, env=NO_CI)
    assert rec.returncode == 0, rec.stderr
    assert rec.stdout.startswith("recorded 40 frames (cam-p=40)")
    rep = evi("replay", str(clip), "--stream", "cam-p-again", "--speed", "max", *flags, env=NO_CI)
    assert rep.returncode == 0, rep.stderr
    assert rep.stdout.startswith("replayed 40 frames (cam-p->cam-p-again)")
    for done in (rec, rep):
        assert "\x1b" not in done.stdout + done.stderr
        assert "reading " not in done.stderr and "replaying to" not in done.stderr
