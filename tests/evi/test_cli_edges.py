"""Clear errors at the edges: a bad command, bad settings or an absent broker is one line on
stderr and an exit code, from every `evi` command; never a traceback or librdkafka's raw log.
Each command runs as a child process, as a user runs it. No broker needed: nothing listens on
127.0.0.1:1."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest

from evi.settings import REPO_ROOT
from evi.wire import FrameMeta, frame_headers
from producers.clip import ClipRecord, ClipWriter

DOWN = "127.0.0.1:1"  # refused at once: nothing listens on port 1
RAW_LIBRDKAFKA = "|FAIL|"  # as in %3|1700000000.123|FAIL|rdkafka#producer-1| ...


def env(**extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("EVI_")}
    return base | extra


def evi(*args: str, timeout: float = 60, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "evi.cli", *args], cwd=REPO_ROOT, text=True,
                          capture_output=True, timeout=timeout, env=env(**extra), check=False)


def clean(stderr: str) -> None:
    assert "Traceback" not in stderr and RAW_LIBRDKAFKA not in stderr, stderr


def one_line(out: subprocess.CompletedProcess[str]) -> str:
    clean(out.stderr)
    lines = out.stderr.splitlines()
    assert len(lines) == 1, out.stderr
    return lines[0]


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    """A good one-frame clip, so that only the broker can be what stops a replay."""
    ok, jpeg = cv2.imencode(".jpg", np.zeros((48, 64, 3), np.uint8))
    assert ok
    path = tmp_path / "c.evi"
    w = ClipWriter(path, {"tool": "test", "kind": "face"})
    headers = tuple(frame_headers(FrameMeta("cam1", 0, 1000, 64, 48, producer="test")))
    w.write(ClipRecord(1000, b"cam1", headers, bytes(jpeg)))
    w.close()
    return path


def test_unknown_command_is_one_line_and_exit_2() -> None:
    out = evi("foo")
    assert out.returncode == 2 and out.stdout == ""
    assert one_line(out) == "evi: unknown command 'foo' (see evi --help)"


def test_no_command_prints_usage_to_stderr_and_exits_2_help_exits_0() -> None:
    bare = evi()
    assert bare.returncode == 2 and bare.stdout == ""
    assert bare.stderr.startswith("Usage: evi [OPTIONS] COMMAND") and "  produce  " in bare.stderr
    helped = evi("--help")
    assert helped.returncode == 0 and helped.stdout == bare.stderr and helped.stderr == ""


def entries(clip: Path, tmp_path: Path) -> dict[str, list[str]]:
    """Every command that reads settings, with the arguments it needs to reach them."""
    return {
        "produce": ["produce", "--source", "sample:"],
        "process": ["process", "--kind", "face"],
        "gateway": ["gateway", "--port", "0", "--metrics-port", "0", "--no-auth"],
        "record": ["record", "--since", "0", "--out", str(tmp_path / "x.evi")],
        "replay": ["replay", str(clip)],
        "lag": ["lag", "--kind", "face"],
        "kafka topics": ["kafka", "topics", "--kind", "face"],
        "dev": ["dev"],
    }


def in_parallel(runs: dict[str, tuple[list[str], dict[str, str]]],
                timeout: float = 60) -> dict[str, subprocess.CompletedProcess[str]]:
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {name: pool.submit(evi, *args, timeout=timeout, **extra)
                   for name, (args, extra) in runs.items()}
        return {name: f.result() for name, f in futures.items()}


def test_bad_bootstrap_servers_stop_every_command_with_one_line(
    clip: Path, tmp_path: Path
) -> None:
    runs = {name: (args, {"EVI_KAFKA__BOOTSTRAP_SERVERS": " , "})
            for name, args in entries(clip, tmp_path).items()}
    for name, out in in_parallel(runs).items():
        assert out.returncode == 2, (name, out.stderr)
        assert one_line(out) == ("evi: bad config: kafka.bootstrap_servers: empty: give "
                                 "host:port[,host:port...]"), name


@pytest.mark.parametrize("value, says", [
    ("", "empty: give host:port[,host:port...]"),  # not the default 127.0.0.1:9092
    ("host:notaport", "'host:notaport': port 'notaport' is not a number 1-65535"),
])
def test_a_bad_bootstrap_flag_is_one_line(value: str, says: str) -> None:
    out = evi("produce", "--source", "sample:", "--bootstrap-servers", value)
    assert out.returncode == 2
    assert one_line(out) == f"evi: bad config: kafka.bootstrap_servers: {says}"


def test_env_json_that_does_not_parse_stops_every_command_with_one_line(
    clip: Path, tmp_path: Path
) -> None:
    runs = {name: (args, {"EVI_TOPICS": "{bad"})
            for name, args in entries(clip, tmp_path).items()}
    runs["gateway kinds"] = (["gateway", "--no-auth"], {"EVI_KINDS": "[face"})
    for name, out in in_parallel(runs).items():
        assert out.returncode == 2, (name, out.stderr)
        want = ("EVI_KINDS: not valid JSON (Expecting value at character 2)"
                if name == "gateway kinds" else
                "EVI_TOPICS: not valid JSON (Expecting property name enclosed in double quotes "
                "at character 2)")
        assert one_line(out) == f"evi: bad config: {want}", name


def test_one_shot_commands_say_in_one_line_that_kafka_does_not_answer(
    clip: Path, tmp_path: Path
) -> None:
    flags = ["--bootstrap-servers", DOWN]
    runs = {
        "kafka topics": (["kafka", "topics", "--kind", "face"],
                         {"EVI_KAFKA__BOOTSTRAP_SERVERS": DOWN}),
        "record": (["record", "--since", "0", "--out", str(tmp_path / "x.evi"), *flags], {}),
        "replay": (["replay", str(clip), *flags], {}),
        "lag": (["lag", "--kind", "face", *flags], {}),
    }
    started = time.monotonic()
    outs = in_parallel(runs)
    assert time.monotonic() - started < 30
    gave_up = f"Kafka at {DOWN} does not answer (gave up after 10 s)"
    for name, out in outs.items():
        assert out.returncode == 1, (name, out.stderr)
        assert one_line(out) == f"evi {name}: {gave_up}", (name, out.stderr)
    assert not (tmp_path / "x.evi").exists()


def stderr_for(args: list[str], seconds: float, **extra: str) -> tuple[bool, int, str]:
    """Run a long-running command for `seconds`, then SIGTERM it: (still running when
    signalled, exit code, stderr)."""
    p = subprocess.Popen([sys.executable, "-m", "evi.cli", *args], cwd=REPO_ROOT, text=True,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env(**extra))
    try:
        time.sleep(seconds)
        running = p.poll() is None
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    return running, p.returncode, err


def test_producer_says_once_that_kafka_does_not_answer_and_keeps_retrying() -> None:
    running, code, err = stderr_for(["produce", "--source", "sample:", "--stream", "s1",
                                     "--loop", "--fps", "5", "--bootstrap-servers", DOWN], 8,
                                    EVI_PUBLISHER__FLUSH_TIMEOUT_S="1")
    assert running
    clean(err)
    about_kafka = [line for line in err.splitlines() if "Kafka" in line]
    assert len(about_kafka) == 1, err
    assert about_kafka[0].endswith(f"WARNING evi.producer: Kafka at {DOWN} does not answer: "
                                   "retrying, frames are dropped oldest-first until it does")
    assert code == 1  # frames were not delivered


def test_gateway_keeps_serving_without_kafka_and_without_librdkafkas_lines() -> None:
    running, _, err = stderr_for(["gateway", "--port", "0", "--metrics-port", "0", "--no-auth",
                                  "--bootstrap-servers", DOWN], 8)
    assert running
    clean(err)
    assert "cannot reach Kafka" in err  # gateway/feed.py's line


def test_processor_waits_for_kafka_within_its_bound_then_exits_70_with_one_line() -> None:
    from processors.models import fetch_models

    fetch_models(REPO_ROOT / ".cache")
    out = evi("process", "--kind", "face", "--web-port", "0", "--bootstrap-servers", DOWN,
              EVI_KAFKA__STARTUP_WAIT_S="1")
    clean(out.stderr)
    assert out.returncode == 70, out.stderr
    first, last = out.stderr.splitlines()
    assert first.endswith(f"WARNING evi.processor: Kafka at {DOWN} does not answer: retrying "
                          "for up to 1 s")
    assert last == f"evi process: Kafka at {DOWN} does not answer (gave up after 1 s)"
