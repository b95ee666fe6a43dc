"""The one `evi` command tree: every command's help, the common flags on every command and where
they land (its --print-settings), one-line usage errors with exit 2, shell completion, --version.
In-process through evi.cli.main (as the deploy tests call it), no broker needed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import cv2
import numpy as np
import pytest

from evi.cli import SERVICES, main
from evi.settings import REPO_ROOT
from evi.wire import FrameMeta, frame_headers
from producers.clip import ClipRecord, ClipWriter

# Every leaf command, with the arguments it needs before it reads its settings.
COMMANDS: dict[str, list[str]] = {
    "produce": ["produce", "--source", "sample:"],
    "sample": ["sample", "--out", "clip.avi"],
    "process": ["process", "--kind", "face"],
    "gateway": ["gateway", "--no-auth"],
    "models list": ["models", "list"],
    "models fetch": ["models", "fetch"],
    "models quantize": ["models", "quantize"],
    "lag": ["lag"],
    "record": ["record", "--since", "0", "--out", "x.evi"],
    "replay": ["replay", "x.evi"],
    "dev": ["dev"],
    "kafka fetch": ["kafka", "fetch"],
    "kafka start": ["kafka", "start"],
    "kafka stop": ["kafka", "stop"],
    "kafka status": ["kafka", "status"],
    "kafka reset": ["kafka", "reset"],
    "kafka topics": ["kafka", "topics"],
}
COMMON = ["--bootstrap-servers", "10.1.2.3:9093", "--topic-prefix", "cli-tree",
          "--log-level", "warning", "--print-settings"]


def write_clip(path: Path) -> None:
    """A one-frame clip: replay reads its settings once the clip checks out."""
    ok, jpeg = cv2.imencode(".jpg", np.zeros((48, 64, 3), np.uint8))
    assert ok
    w = ClipWriter(path, {"tool": "test", "kind": "face"})
    headers = tuple(frame_headers(FrameMeta("cam1", 0, 1000, 64, 48, producer="test")))
    w.write(ClipRecord(1000, b"cam1", headers, bytes(jpeg)))
    w.close()


@pytest.fixture(autouse=True)
def no_evi_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for k in [k for k in os.environ if k.startswith("EVI_")]:
        monkeypatch.delenv(k)
    yield


def test_the_table_names_every_top_level_command() -> None:
    assert sorted({args[0] for args in COMMANDS.values()}) == sorted(SERVICES)


@pytest.mark.parametrize("name", [*SERVICES, *[n for n in COMMANDS if " " in n]])
def test_every_command_has_help_that_exits_0(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*name.split(), "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"Usage: evi {name} "), out
    if name not in ("models", "kafka"):  # groups: their commands take the flags
        for flag in ("--bootstrap-servers", "--topic-prefix", "--log-level", "--print-settings"):
            assert flag in out, (name, flag)


@pytest.mark.parametrize("name", COMMANDS)
def test_common_flags_land_in_each_commands_settings(
    name: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EVI_TOPICS__FRAME_PARTITIONS", "7")  # env still fills what no flag sets
    monkeypatch.setenv("EVI_KAFKA__BOOTSTRAP_SERVERS", "envhost:1")  # the flag wins over env
    if name == "replay":
        write_clip(tmp_path / "x.evi")
    assert main([*COMMANDS[name], *COMMON]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["kafka"]["bootstrap_servers"] == "10.1.2.3:9093"
    assert doc["topics"]["prefix"] == "cli-tree"
    assert doc["topics"]["frame_partitions"] == 7
    assert doc["log_level"] == "WARNING"
    assert not list(tmp_path.glob("*.avi")), "--print-settings must not run the command"


def test_a_command_flag_and_the_common_ones_meet_in_one_settings_object(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EVI_AUTH_TOKEN", "x" * 32)
    assert main(["gateway", "--port", "8123", "--kind", "face", "--kind", "person",
                 "--topic-prefix", "both", "--print-settings"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["port"], doc["kinds"], doc["topics"]["prefix"]) == (8123, ["face", "person"],
                                                                     "both")
    assert doc["auth_token"] == "**********"  # masked, never printed


def test_without_the_flags_env_and_defaults_decide(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EVI_TOPICS__PREFIX", "fromenv")
    assert main(["lag", "--print-settings"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["topics"]["prefix"] == "fromenv"
    assert doc["kafka"]["bootstrap_servers"] == "127.0.0.1:9092"
    assert doc["log_level"] == "INFO"


def test_the_flags_of_one_run_do_not_leak_into_the_next(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["lag", "--topic-prefix", "once", "--print-settings"]) == 0
    assert main(["lag", "--print-settings"]) == 0
    first, second = capsys.readouterr().out.split("}\n{", 1)
    assert '"prefix": "once"' in first and '"prefix": "evi"' in second


def test_a_bad_common_flag_value_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["lag", "--log-level", "LOUD"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("evi lag: Invalid value for '--log-level'"), err


@pytest.mark.parametrize(("argv", "line"), [
    (["foo"], "evi: unknown command 'foo' (see evi --help)"),
    (["--bogus"], "evi: No such option: --bogus (see evi --help)"),
    (["process", "--bogus"], "evi process: No such option: --bogus (see evi process --help)"),
    (["models", "bar"], "evi models: No such command 'bar' (see evi models --help)"),
    (["process", "--policy", "nope"], "evi process: Invalid value for '--policy': 'nope' is "
                                      "not one of 'process-all', 'drop-stale' (see evi process "
                                      "--help)"),
    (["replay"], "evi replay: give a clip file or --from-topic (one of them) "
                 "(see evi replay --help)"),
])
def test_unknown_commands_and_flags_are_one_error_line_and_exit_2(
    argv: list[str], line: str, capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(argv) == 2
    out = capsys.readouterr()
    assert out.out == "" and out.err.splitlines() == [line]


def test_help_lists_commands_without_importing_any_service() -> None:
    code = ("import sys; from evi.cli import main; main(['--help']); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('producers', 'processors', 'gateway', 'cv2', 'faust', 'fastapi', 'openvino')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True,
                         text=True, timeout=60, check=True).stdout
    assert out.splitlines()[-1] == "[]"
    for name in SERVICES:
        assert f"\n  {name} " in out, name


def test_version_comes_from_the_installed_package(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"evi {version('evi')}\n"


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_shell_completion_script_is_generated(shell: str) -> None:
    out = subprocess.run([sys.executable, "-m", "evi.cli", "--show-completion", shell],
                         cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
                         env={**os.environ, "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"})
    assert out.returncode == 0, out.stderr
    assert "_EVI_COMPLETE" in out.stdout and "complete_" in out.stdout, out.stdout


def test_completion_offers_commands_and_a_commands_flags() -> None:
    def complete(words: str) -> list[str]:
        env = {**os.environ, "_EVI_COMPLETE": "complete_bash", "COMP_WORDS": words,
               "COMP_CWORD": str(len(words.split()) - (0 if words.endswith(" ") else 1))}
        out = subprocess.run([sys.executable, "-m", "evi.cli"], cwd=REPO_ROOT, env=env,
                             capture_output=True, text=True, timeout=60)
        return out.stdout.split()

    assert {"produce", "process"} <= set(complete("evi pro"))
    assert "--topic-prefix" in complete("evi process --topic")


def test_evi_dev_hands_the_common_flags_to_its_children_as_env(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from evi.dev import hand_down_common_flags
    from evi.settings import CommonFlags, given_flags

    for name in ("EVI_KAFKA__BOOTSTRAP_SERVERS", "EVI_TOPICS__PREFIX"):
        # setenv first: a delenv of an absent variable records nothing, and what the function
        # sets would then outlive this test (a later test saw topic prefix "kids")
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    monkeypatch.setenv("EVI_LOG_LEVEL", "ERROR")  # not given as a flag: stays as it was
    with given_flags(CommonFlags(bootstrap_servers="k:9092", topic_prefix="kids")):
        hand_down_common_flags()
    assert os.environ["EVI_KAFKA__BOOTSTRAP_SERVERS"] == "k:9092"
    assert os.environ["EVI_TOPICS__PREFIX"] == "kids"
    assert os.environ["EVI_LOG_LEVEL"] == "ERROR"
