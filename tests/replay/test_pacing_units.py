"""Pacing, header rewriting and time parsing of record/replay, without a broker."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import typer

from evi.errors import ConfigError
from evi.wire import FRAME_HEADERS, FrameMeta, frame_headers, parse_frame
from producers.record import format_time, parse_time
from producers.replay import Pacer, main, rewrite, speed
from tests.replay.util import jpeg, write_clip

T0 = 1_764_070_000_000


def test_pacer_keeps_original_spacing_divided_by_speed() -> None:
    for factor in (1.0, 2.0, 0.5):
        p = Pacer(T0, factor, mono=100.0, wall_ms=5_000)
        assert p.delay(T0, 100.0) == 0.0
        assert p.delay(T0 + 1000, 100.2) == pytest.approx(1.0 / factor - 0.2)
        assert p.stamp(T0 + 1000, 0) == 5_000 + round(1000 / factor)
        assert p.stamp(T0 + 333, 0) == 5_000 + round(333 / factor)


def test_pacer_moves_its_origin_instead_of_bursting_after_a_stall() -> None:
    p = Pacer(T0, 1.0, mono=0.0, wall_ms=0)
    assert p.delay(T0 + 100, 0.05) == pytest.approx(0.05)
    # Stalled 3 s at frame T0+200: it goes now, and the rest keeps its spacing from here.
    assert p.delay(T0 + 200, 3.2) == 0.0
    assert p.stamp(T0 + 200, 0) == 3200
    assert p.delay(T0 + 300, 3.2) == pytest.approx(0.1)
    assert p.stamp(T0 + 300, 0) == 3300
    # A small lag (under a second) is caught up, not shifted.
    assert p.delay(T0 + 400, 3.9) == 0.0 and p.stamp(T0 + 400, 0) == 3400


def test_pacer_at_max_speed_stamps_send_time_never_backwards() -> None:
    p = Pacer(T0, None, mono=0.0, wall_ms=1000)
    assert p.delay(T0 + 10_000, 0.0) == 0.0
    assert [p.stamp(T0, w) for w in (1001, 1005, 1003, 1010)] == [1001, 1005, 1005, 1010]


def test_rewrite_replaces_only_changed_frame_headers_in_place() -> None:
    meta = FrameMeta("cam1", 812, T0, 640, 480, producer="host-1")
    headers = (("trace-id", b"abc"), *frame_headers(meta), ("note", None))
    new = replace(meta, stream="cam1-replay", ts_ms=T0 + 5, producer="replay-x/host-1")
    out = rewrite(headers, meta, new)
    assert [k for k, _ in out] == ["trace-id", *FRAME_HEADERS, "note"]
    changed = {k for (k, v), (_, w) in zip(headers, out, strict=True) if v != w}
    assert changed == {"evi-stream", "evi-ts", "evi-producer"}
    assert parse_frame(b"cam1-replay", jpeg(0), out) == new
    # Unchanged fields keep their exact original bytes, even in a form we would not write.
    odd = tuple((k, b"0640") if k == "evi-width" else (k, v) for k, v in frame_headers(meta))
    assert dict(rewrite(odd, meta, replace(meta, ts_ms=1)))["evi-width"] == b"0640"


@pytest.mark.parametrize(("text", "ms"), [
    ("2025-11-25T11:26:40.123Z", 1_764_070_000_123),
    ("2025-11-25T11:26:40.123", 1_764_070_000_123),  # no zone = UTC, as Kafka's tool reads it
    ("2025-11-25T12:26:40.123+01:00", 1_764_070_000_123),
    ("2025-11-25T11:26:40", 1_764_070_000_000),
    ("1764070000123", 1_764_070_000_123),
    ("now", 42),
])
def test_parse_time_accepts_kafka_and_iso_forms(text: str, ms: int) -> None:
    assert parse_time(text, now_ms=42) == ms


def test_format_time_is_what_kafka_to_datetime_takes() -> None:
    assert format_time(1_764_070_000_123) == "2025-11-25T11:26:40.123Z"
    assert format_time(1_764_070_000_005) == "2025-11-25T11:26:40.005Z"
    assert parse_time(format_time(1_764_070_000_005)) == 1_764_070_000_005
    with pytest.raises(ConfigError, match="is not ISO 8601"):
        parse_time("yesterday")


def test_speed_flag() -> None:
    assert speed("max") is None and speed("2") == 2.0 and speed("0.5") == 0.5
    for bad in ("0", "-1", "fast", "1e9"):
        with pytest.raises(typer.BadParameter):
            speed(bad)


def test_dry_run_checks_and_describes_the_clip_without_a_broker(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clip = tmp_path / "c.evi"
    write_clip(clip, {"cam-a": [T0, T0 + 100, T0 + 200], "cam-b": [T0 + 50]})
    code = main([str(clip), "--dry-run", "--bootstrap-servers", "127.0.0.1:1"])
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "cam-a -> cam-a: 3 frames 64x48 2025-11-25T11:26:40.000Z..2025-11-25T11:26:40.200Z "
        "(10 fps) to evi.frames.face",
        "cam-b -> cam-b: 1 frames 64x48 2025-11-25T11:26:40.050Z..2025-11-25T11:26:40.050Z "
        "(0 fps) to evi.frames.face",
    ]
    with pytest.raises(SystemExit) as exit_:
        main([str(clip), "--dry-run", "--stream", "x"])
    assert exit_.value.code == 2
    assert "holds streams cam-a, cam-b: choose one with --from-stream" in capsys.readouterr().err
