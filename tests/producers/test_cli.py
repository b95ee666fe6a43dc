"""Flags, env, config files and their errors; no broker (run() is replaced)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

import producers.__main__ as cli
from evi.demo import Schedule
from producers.settings import ProducerSettings

schedules: list[Schedule | None] = []  # what each main() handed run()


@pytest.fixture
def ran(monkeypatch: pytest.MonkeyPatch) -> list[ProducerSettings]:
    seen: list[ProducerSettings] = []

    def fake_run(settings: ProducerSettings, stop: threading.Event, metrics: object,
                 schedule: Schedule | None = None) -> int:
        seen.append(settings)
        schedules.append(schedule)
        return 0

    monkeypatch.setattr(cli, "run", fake_run)
    return seen


def test_a_schedule_makes_its_own_looping_sample_streams_in_one_process(
    ran: list[ProducerSettings], capsys: pytest.CaptureFixture[str]
) -> None:
    schedules.clear()
    assert cli.main(["--schedule", "demo", "--pace", "3", "--kind", "face"]) == 0
    (s,) = ran
    assert [st.id for st in s.streams] == [f"sample-{i}" for i in range(1, 13)]
    assert {(st.source, st.loop, st.fps) for st in s.streams} == {("sample:", True, 15.0)}
    (schedule,) = schedules
    assert schedule is not None and schedule.pace == 3.0
    with pytest.raises(SystemExit):
        cli.main(["--schedule", "demo", "--source", "sample:"])
    assert "--schedule makes its own sample streams" in capsys.readouterr().err


def test_samples_adds_n_sample_streams_after_the_named_sources(
    ran: list[ProducerSettings], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["--source", "sample:", "--stream", "cam", "--samples", "3", "--fps",
                     "30", "--loop"]) == 0
    (s,) = ran
    assert [(st.id, st.source, st.fps, st.loop) for st in s.streams] == [
        ("cam", "sample:", 30.0, True), ("sample-1", "sample:", 30.0, True),
        ("sample-2", "sample:", 30.0, True), ("sample-3", "sample:", 30.0, True)]
    with pytest.raises(SystemExit):
        cli.main(["--samples", "0"])
    assert "want 1 <= --samples <= 256" in capsys.readouterr().err


def test_flags_build_one_stream_with_defaults(ran: list[ProducerSettings]) -> None:
    assert cli.main(["--source", "sample:", "--count", "5"]) == 0
    (s,) = ran
    (stream,) = s.streams
    assert (stream.id, stream.kinds, stream.fps, stream.quality, stream.count) == (
        "sample", ["face"], None, 80, 5)
    assert s.metrics_port == 0 and s.producer_id.rsplit("-", 1)[1].isdigit()


def test_flags_override_env_which_overrides_defaults(
    ran: list[ProducerSettings], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EVI_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:1111")
    monkeypatch.setenv("EVI_TOPICS__PREFIX", "fromenv")
    monkeypatch.setenv("EVI_PUBLISHER__LINGER_MS", "20")
    cli.main(["--source", "sample:", "--bootstrap-servers", "127.0.0.1:2222"])
    s = ran[0]
    assert s.kafka.bootstrap_servers == "127.0.0.1:2222"
    assert s.topics.prefix == "fromenv" and s.publisher.linger_ms == 20


def test_streams_from_env_when_no_source_flag(
    ran: list[ProducerSettings], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EVI_STREAMS", json.dumps([{"source": "sample:", "id": "envcam"}]))
    cli.main([])
    assert [s.id for s in ran[0].streams] == ["envcam"]


def test_repeated_sources_pair_with_stream_ids(
    ran: list[ProducerSettings], tmp_path: Path
) -> None:
    door = tmp_path / "door.mp4"
    door.write_bytes(b"")  # there: what it holds is the source's business, when it opens
    cli.main(["--source", "sample:", "--stream", "a", "--source", "sample:320x240",
              "--source", str(door), "--kind", "face", "--kind", "person", "--loop"])
    streams = ran[0].streams
    assert [s.id for s in streams] == ["a", "sample", "door"]
    assert all(s.kinds == ["face", "person"] and s.loop for s in streams)


def test_bad_flags_exit_2_with_one_line_per_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        cli.main(["--source", "sample:", "--quality", "0", "--fps", "-1", "--kind", "Face!"])
    assert e.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 3
    assert all(line.startswith("evi: bad config: stream #1 (sample:): ") for line in lines)
    assert any("quality" in x for x in lines) and any("kind 'Face!'" in x for x in lines)


def test_duplicate_ids_and_no_streams_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--source", "sample:", "--source", "sample:320x240"])
    assert "id used twice" in capsys.readouterr().err
    assert cli.main([]) == 2
    assert "no streams" in capsys.readouterr().err


def test_print_settings_masks_secrets(capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVI_KAFKA__SASL_PASSWORD", "hunter2")
    assert cli.main(["--source", "rtsp://admin:hunter2@10.0.0.9/s", "--print-settings"]) == 0
    out = capsys.readouterr().out
    assert "hunter2" not in out
    doc = json.loads(out)
    assert doc["streams"][0]["source"] == "rtsp://***@10.0.0.9/s"
    assert doc["kafka"]["sasl_password"] == "**********"


YAML = """
defaults: {kinds: [face, person], fps: 5}
streams:
  - {id: lobby, source: "sample:", loop: true}
  - {id: door, source: "sample:320x240", fps: -3}
  - {source: "sample:160x120", quality: 101}
  - {id: yard, source: "sample:", kinds: [vehicle]}
"""

TOML = """
[[streams]]
id = "lobby"
source = "sample:"
quality = 70
"""


def test_yaml_config_runs_good_streams_and_reports_bad_ones(
    tmp_path: Path, ran: list[ProducerSettings], capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "streams.yaml"
    cfg.write_text(YAML)
    assert cli.main(["--config", str(cfg), "--count", "9"]) == 1  # ran, but not all streams
    streams = ran[0].streams
    assert [s.id for s in streams] == ["lobby", "yard"]
    assert streams[0].kinds == ["face", "person"] and streams[0].fps == 5 and streams[0].loop
    assert streams[1].kinds == ["vehicle"] and all(s.count == 9 for s in streams)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2
    assert err[0].startswith("evi: bad config: stream door: fps: ")
    assert err[0].endswith(f"(fix it in {cfg})")
    assert err[1].startswith("evi: bad config: stream #3 (sample:160x120): quality: ")


def test_toml_config(tmp_path: Path, ran: list[ProducerSettings]) -> None:
    cfg = tmp_path / "streams.toml"
    cfg.write_text(TOML)
    assert cli.main(["--config", str(cfg)]) == 0
    assert [(s.id, s.quality) for s in ran[0].streams] == [("lobby", 70)]


@pytest.mark.parametrize(("text", "suffix", "message"), [
    ("streams: [", ".yaml", "is not valid YAML"),
    ("streams = [", ".toml", "is not valid TOML"),
    ("streams: []", ".yaml", "'streams' must be a non-empty list"),
    ("stream: [{source: x}]", ".yml", "unknown top-level key(s) ['stream']"),
    ("streams: [{source: 'sample:', fps: -1}]", ".yaml", "stream #1 (sample:): fps"),
])
def test_malformed_config_exits_2_with_one_clear_line(
    tmp_path: Path, text: str, suffix: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / f"streams{suffix}"
    cfg.write_text(text)
    with pytest.raises(SystemExit) as e:
        cli.main(["--config", str(cfg)])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_a_missing_video_file_is_one_line_and_exit_2_before_kafka(
    ran: list[ProducerSettings], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["--source", "file:missing.mp4", "--stream", "s1"]) == 2
    assert capsys.readouterr().err == ("evi produce: no such video file: file:missing.mp4 "
                                       "(stream s1)\n")
    assert ran == []  # nothing started, no broker asked


def test_a_missing_file_among_good_sources_is_one_line_and_the_rest_run(
    ran: list[ProducerSettings], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["--source", "sample:", "--source", "nowhere/lobby.mp4"]) == 1
    assert capsys.readouterr().err == ("evi produce: no such video file: nowhere/lobby.mp4 "
                                       "(stream lobby)\n")
    assert [s.id for s in ran[0].streams] == ["sample"]


def test_missing_files_in_a_config_file_leave_the_other_streams_running(
    tmp_path: Path, ran: list[ProducerSettings], capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "streams.yaml"
    cfg.write_text("streams:\n  - {id: gone, source: videos/gone.mp4}\n"
                   "  - {id: cam, source: 'rtsp://cam.example/s'}\n")
    assert cli.main(["--config", str(cfg)]) == 1
    assert [s.id for s in ran[0].streams] == ["cam"]  # a live source: opened (and retried) later
    assert capsys.readouterr().err == ("evi produce: no such video file: videos/gone.mp4 "
                                       "(stream gone)\n")
