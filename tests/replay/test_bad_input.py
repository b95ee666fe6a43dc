"""Bad input to `evi record` / `evi replay`: one clear line on stderr, a non-zero exit, and nothing
published (the whole clip is checked before its first record goes out)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from evi.settings import KafkaSettings
from evi.topics import Topics
from evi.wire import FrameMeta, frame_headers
from producers.clip import ClipRecord, ClipWriter
from producers.record import format_time
from tests.helpers import REPO
from tests.producers.kafka_util import statuses
from tests.replay.util import common, end_offsets, evi, jpeg, produce, read_all, write_clip

pytestmark = pytest.mark.kafka

T0 = 1_764_070_000_000


def untouched(kafka: KafkaSettings, topics: Topics) -> bool:
    """Nothing in the frames topic nor the stream registry."""
    return (sum(end_offsets(kafka, topics.frames("face")).values()) == 0
            and sum(end_offsets(kafka, topics.streams).values()) == 0)


def good_clip(path: Path) -> bytes:
    write_clip(path, {"cam": [T0 + 40 * i for i in range(20)]})
    return path.read_bytes()


@pytest.mark.parametrize(("name", "make", "message"), [
    ("truncated", lambda d: d[: len(d) * 2 // 3], "truncated: the record needs"),
    ("no-end", lambda d: d[:-17], "the end record is missing"),
    ("flipped", lambda d: d[:-200] + bytes([d[-200] ^ 0xFF]) + d[-199:], "checksum mismatch"),
    ("foreign", lambda d: jpeg(3), "is not an evi clip"),
    ("empty", lambda d: b"", "is empty, not an evi clip"),
])
def test_bad_clip_is_refused_before_anything_is_published(
    kafka: KafkaSettings, topics: Topics, tmp_path: Path, name: str, make: object,
    message: str
) -> None:
    data = good_clip(tmp_path / "good.evi")
    bad = tmp_path / f"{name}.evi"
    bad.write_bytes(make(data))  # type: ignore[operator]
    out = evi("replay", str(bad), "--speed", "max", *common(kafka, topics.prefix))
    assert out.returncode == 1, out.stdout
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"evi replay: {bad}"), out.stderr
    assert message in lines[0]
    assert untouched(kafka, topics)
    # The same clip, whole, goes through.
    ok = evi("replay", str(tmp_path / "good.evi"), "--speed", "max",
             *common(kafka, topics.prefix))
    assert ok.returncode == 0, ok.stderr
    assert len(read_all(kafka, topics.frames("face"))) == 20


def test_a_clip_whose_last_frame_is_bad_publishes_nothing(
    kafka: KafkaSettings, topics: Topics, tmp_path: Path
) -> None:
    w = ClipWriter(tmp_path / "c.evi", {"kind": "face"})
    for i in range(10):
        meta = FrameMeta("cam", i, T0 + 40 * i, 64, 48)
        w.write(ClipRecord(meta.ts_ms, b"cam", tuple(frame_headers(meta)),
                           jpeg(i) if i < 9 else b"not a jpeg"))
    w.close()
    out = evi("replay", str(tmp_path / "c.evi"), *common(kafka, topics.prefix))
    assert out.returncode == 1
    assert "record 9 at byte" in out.stderr and "not-jpeg" in out.stderr
    assert untouched(kafka, topics)


def test_record_and_replay_of_an_empty_window(
    kafka: KafkaSettings, topics: Topics, tmp_path: Path
) -> None:
    produce(kafka, topics.prefix, ["cam-e"], count=5, fps=0)
    frames = read_all(kafka, topics.frames("face"))
    before = frames[0].ts_ms - 60_000
    window = ["--since", format_time(before), "--until", format_time(before + 1000)]
    out = evi("record", "--kind", "face", *window, "--out", str(tmp_path / "x.evi"),
              *common(kafka, topics.prefix))
    assert out.returncode == 1
    assert out.stderr.strip() == (
        f"evi record: no frames of any stream in {topics.frames('face')} between "
        f"{format_time(before)} and {format_time(before + 1000)}")
    assert list(tmp_path.iterdir()) == [], "no clip, not even a partial one"
    # Frames in the window, but of another stream.
    out = evi("record", "--stream", "cam-zz", "--since", format_time(frames[0].ts_ms),
              "--out", str(tmp_path / "x.evi"), *common(kafka, topics.prefix))
    assert out.returncode == 1 and "no frames of cam-zz" in out.stderr
    assert "(5 frames of other streams)" in out.stderr
    out = evi("replay", "--from-topic", topics.frames("face"), *window, "--to-stream", "copy",
              *common(kafka, topics.prefix))
    assert out.returncode == 1 and "evi replay: no frames of any stream" in out.stderr
    assert len(read_all(kafka, topics.frames("face"))) == 5


def test_unknown_topic(kafka: KafkaSettings, topics: Topics, tmp_path: Path) -> None:
    missing = f"{topics.prefix}.frames.nosuchkind"
    out = evi("record", "--kind", "nosuchkind", "--since", "0", "--out",
              str(tmp_path / "x.evi"), *common(kafka, topics.prefix))
    assert out.returncode == 1
    assert out.stderr.strip() == (f"evi record: topic {missing} does not exist (check --kind, "
                                  "--topic-prefix or --from-topic)")
    out = evi("replay", "--from-topic", missing, "--since", "0", "--kind", "face",
              *common(kafka, topics.prefix))
    assert out.returncode == 1 and f"topic {missing} does not exist" in out.stderr
    assert untouched(kafka, topics)
    assert list(tmp_path.iterdir()) == []


def test_bad_flags_exit_2(kafka: KafkaSettings, topics: Topics, tmp_path: Path) -> None:
    good_clip(tmp_path / "c.evi")
    cases = [
        (["replay", str(tmp_path / "c.evi"), "--speed", "0"],
         "Invalid value for '--speed': '0': use a factor 0.01-1000 or 'max'"),
        (["replay"], "give a clip file or --from-topic"),
        (["replay", str(tmp_path / "c.evi"), "--stream", "bad id"], "is not valid"),
        (["replay", "--from-topic", topics.frames("face")], "--from-topic needs --since"),
        (["record", "--since", "yesterday", "--out", "x.evi"], "is not ISO 8601"),
        (["record", "--since", "now", "--until", "0", "--out", "x.evi"], "is not after"),
    ]
    for args, message in cases:
        out = evi(*args, *common(kafka, topics.prefix))
        assert out.returncode == 2, (args, out.stderr)
        assert message in out.stderr, (args, out.stderr)
    assert untouched(kafka, topics)


def test_replay_stopped_by_sigterm_says_how_far_it_got(
    kafka: KafkaSettings, topics: Topics, tmp_path: Path
) -> None:
    write_clip(tmp_path / "long.evi", {"cam-s": [T0 + 100 * i for i in range(100)]})  # 10 s
    proc = subprocess.Popen(
        [sys.executable, "-m", "evi.cli", "replay", str(tmp_path / "long.evi"), "--speed", "1",
         *common(kafka, topics.prefix)], cwd=REPO, text=True, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and sum(end_offsets(
                kafka, topics.frames("face")).values()) < 10:
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1
    sent = len(read_all(kafka, topics.frames("face")))
    assert 10 <= sent < 100
    assert err.strip().endswith(f"evi replay: stopped by a signal: published {sent} of 100 "
                                "frames"), err
    last = statuses(kafka, topics.streams)["cam-s"][-1]
    assert (last.status, last.message) == ("ended", f"stopped by a signal: published {sent} of "
                                                    "100 frames")
