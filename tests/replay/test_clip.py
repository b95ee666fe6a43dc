"""The clip container without a broker: round trips and every way a file can be wrong."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from evi.wire import FrameMeta, frame_headers
from producers.clip import (
    MAGIC,
    ClipError,
    ClipRecord,
    ClipWriter,
    check_clip,
    encode_record,
    read_clip,
)
from tests.replay.util import jpeg, write_clip

T0 = 1_764_070_000_000


def sample_records() -> list[ClipRecord]:
    return [
        ClipRecord(T0, b"cam1", (("evi-stream", b"cam1"), ("trace", None)), b"\xff\xd8\xffA"),
        ClipRecord(T0 + 40, None, (), b""),
        ClipRecord(-5, b"", (("x", b""), ("\u00e9", bytes(range(256)))), bytes(range(256)) * 9),
    ]


def test_round_trip_keeps_timestamp_key_headers_value_and_order(tmp_path: Path) -> None:
    path = tmp_path / "a.evi"
    w = ClipWriter(path, {"kind": "face", "since_ms": T0})
    for r in sample_records():
        w.write(r)
    assert not path.exists(), "the clip appears only when complete"
    w.close()
    assert not (tmp_path / "a.evi.part").exists()
    meta, recs = read_clip(path)
    assert meta == {"kind": "face", "since_ms": T0}
    assert recs == sample_records()
    assert path.read_bytes().startswith(MAGIC + b"\x00\x01")


def test_check_clip_groups_frames_by_stream_in_file_order(tmp_path: Path) -> None:
    write_clip(tmp_path / "c.evi", {"cam-a": [T0, T0 + 100, T0 + 300], "cam-b": [T0 + 50]})
    meta, plans = check_clip(tmp_path / "c.evi")
    assert meta["kind"] == "face"
    assert list(plans) == ["cam-a", "cam-b"]
    assert [e.ts_ms for e in plans["cam-a"].frames] == [T0, T0 + 100, T0 + 300]
    assert [e.index for e in plans["cam-a"].frames + plans["cam-b"].frames] == [0, 1, 2, 3]
    assert (plans["cam-a"].width, plans["cam-a"].height) == (64, 48)
    assert plans["cam-a"].fps() == pytest.approx(2 / 0.3, abs=0.01)
    _, only_b = check_clip(tmp_path / "c.evi", only=frozenset({"cam-b"}))
    assert list(only_b) == ["cam-b"]
    with pytest.raises(ClipError, match="holds no frames of cam-z"):
        check_clip(tmp_path / "c.evi", only=frozenset({"cam-z"}))


def test_every_truncation_is_refused(tmp_path: Path) -> None:
    full = tmp_path / "full.evi"
    write_clip(full, {"cam": [T0, T0 + 40, T0 + 80]})
    data = full.read_bytes()
    cut = tmp_path / "cut.evi"
    for n in range(len(data)):
        cut.write_bytes(data[:n])
        with pytest.raises(ClipError) as e:
            check_clip(cut)
        assert str(cut) in str(e.value)
        assert any(w in str(e.value) for w in ("truncated", "empty", "not an evi clip")), (
            n, str(e.value))


def test_truncated_message_says_what_is_missing(tmp_path: Path) -> None:
    full = tmp_path / "full.evi"
    write_clip(full, {"cam": [T0, T0 + 40, T0 + 80]})
    data = full.read_bytes()
    (tmp_path / "no-end.evi").write_bytes(data[:-17])  # the end record is 17 bytes
    with pytest.raises(ClipError, match=r"truncated after 3 records: the end record is missing"):
        check_clip(tmp_path / "no-end.evi")
    (tmp_path / "mid.evi").write_bytes(data[: len(data) // 2])
    with pytest.raises(ClipError, match=r"record 1 at byte \d+: truncated: the record needs"):
        check_clip(tmp_path / "mid.evi")


@pytest.mark.parametrize("content", [
    jpeg(1),
    b"\x89PNG\r\n\x1a\n" + b"\x00" * 40,
    b"stream,seq,ts\ncam1,0,1\n" * 5,
    b"\x89EVI\n\x1a\n" + b"\x00" * 40,  # our magic after a CRLF -> LF conversion
])
def test_foreign_files_are_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "foreign.evi"
    path.write_bytes(content)
    with pytest.raises(ClipError, match="is not an evi clip"):
        check_clip(path)


def test_empty_and_missing_files(tmp_path: Path) -> None:
    (tmp_path / "empty.evi").write_bytes(b"")
    with pytest.raises(ClipError, match="is empty"):
        check_clip(tmp_path / "empty.evi")
    with pytest.raises(ClipError, match=r"cannot read .*nope\.evi"):
        check_clip(tmp_path / "nope.evi")


def test_flipped_byte_is_a_checksum_error_naming_the_record(tmp_path: Path) -> None:
    path = tmp_path / "c.evi"
    write_clip(path, {"cam": [T0, T0 + 40, T0 + 80]})
    data = bytearray(path.read_bytes())
    data[-17 - 4 - 30] ^= 0x01  # inside the JPEG of the last record
    path.write_bytes(bytes(data))
    with pytest.raises(ClipError, match=r"record 2 at byte \d+: checksum mismatch"):
        check_clip(path)


def test_unknown_version_trailing_bytes_and_wrong_count(tmp_path: Path) -> None:
    path = tmp_path / "c.evi"
    write_clip(path, {"cam": [T0, T0 + 40]})
    data = path.read_bytes()
    (tmp_path / "v2.evi").write_bytes(data[:8] + struct.pack(">H", 2) + data[10:])
    with pytest.raises(ClipError, match="clip version 2 is not supported"):
        check_clip(tmp_path / "v2.evi")
    (tmp_path / "tail.evi").write_bytes(data + b"junk")
    with pytest.raises(ClipError, match="unexpected bytes after the end record"):
        check_clip(tmp_path / "tail.evi")
    # Drop the middle record: every checksum still matches, the count does not.
    first = data.index(encode_record(read_clip(path)[1][1]))
    short = data[:first] + data[first + len(encode_record(read_clip(path)[1][1])):]
    (tmp_path / "short.evi").write_bytes(short)
    with pytest.raises(ClipError, match="says 2 records, the file holds 1"):
        check_clip(tmp_path / "short.evi")


def test_a_record_that_is_not_a_frame_fails_the_whole_clip(tmp_path: Path) -> None:
    meta = FrameMeta("cam", 0, T0, 64, 48)
    good = ClipRecord(T0, b"cam", tuple(frame_headers(meta)), jpeg(0))
    bad = ClipRecord(T0 + 40, b"cam", tuple(frame_headers(meta)), b"GIF89a...")
    w = ClipWriter(tmp_path / "c.evi", {})
    for r in (good, good, bad):
        w.write(r)
    w.close()
    with pytest.raises(ClipError, match=r"record 2 at byte \d+ is not a valid frame: not-jpeg"):
        check_clip(tmp_path / "c.evi")
    with pytest.raises(ClipError, match="too-large"):
        check_clip(tmp_path / "c.evi", max_bytes=100)


def test_abort_leaves_nothing(tmp_path: Path) -> None:
    w = ClipWriter(tmp_path / "x.evi", {})
    w.write(sample_records()[0])
    w.abort()
    assert list(tmp_path.iterdir()) == []
