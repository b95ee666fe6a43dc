"""What `evi dev` starts, from its flags (no broker): one producer for all sample streams, the
live policy by default, the demo schedule."""

from __future__ import annotations

import pytest

from evi.dev import parse_args, producer_args


def test_one_producer_process_feeds_every_sample_stream() -> None:
    a = parse_args(["--streams", "12", "--fps", "30", "--kind", "face", "--kind", "person"])
    assert producer_args(a, a.kinds) == ["produce", "--samples", "12", "--fps", "30.0", "--loop",
                                         "--kind=face", "--kind=person"]


def test_the_demo_producer_plays_the_schedule_at_its_pace() -> None:
    a = parse_args(["--autoscale", "--demo", "--pace", "2"])
    assert producer_args(a, ["face"]) == ["produce", "--schedule", "demo", "--pace", "2.0",
                                          "--kind=face"]


def test_processors_drop_stale_by_default_and_env_or_flag_say_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("EVI_POLICY", raising=False)
    assert parse_args([]).policy == "drop-stale"
    assert parse_args(["--policy", "process-all"]).policy == "process-all"
    monkeypatch.setenv("EVI_POLICY", "process-all")
    assert parse_args([]).policy == "process-all"


@pytest.mark.parametrize(("argv", "says"), [
    (["--demo", "--streams", "3"], "--demo brings its own streams"),
    (["--demo", "--pace", "0"], "pace must be between 0.1 and 100"),
    (["--streams", "0"], "want 1 <= --streams <= 256"),
])
def test_bad_demo_or_stream_flags_are_one_line_before_anything_starts(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from evi import dev

    monkeypatch.setattr(dev, "run", lambda cmd: pytest.fail(f"started {cmd}"))
    with pytest.raises(SystemExit) as e:
        dev.main(argv)
    assert e.value.code == 2
    assert says in capsys.readouterr().err
