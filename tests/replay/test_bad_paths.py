"""A clip that is not there and an --out that cannot be written: one line and exit 2, found
before any broker is asked (127.0.0.1:1 answers nothing, so reaching it would fail otherwise)."""

from __future__ import annotations

from pathlib import Path

import pytest

from producers import record, replay

DOWN = ["--bootstrap-servers", "127.0.0.1:1"]


def test_replay_of_a_missing_clip_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert replay.main([str(tmp_path / "x.evi"), "--kind", "face", *DOWN]) == 2
    assert capsys.readouterr().err == f"evi replay: no such clip file: {tmp_path / 'x.evi'}\n"


def test_replay_of_a_folder_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert replay.main([str(tmp_path), *DOWN]) == 2
    assert capsys.readouterr().err == f"evi replay: {tmp_path} is not a clip file\n"


def test_record_into_a_missing_directory_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "nowhere" / "x.evi"
    assert record.main(["--since", "0", "--out", str(out), *DOWN]) == 2
    assert capsys.readouterr().err == f"evi record: no such directory for --out: {out.parent}\n"
    assert not out.parent.exists()


def test_record_onto_a_folder_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "x.evi").mkdir()
    assert record.main(["--since", "0", "--out", str(tmp_path / "x.evi"), *DOWN]) == 2
    assert capsys.readouterr().err == f"evi record: --out {tmp_path / 'x.evi'} is a directory\n"
