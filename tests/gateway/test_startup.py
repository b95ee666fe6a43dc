"""`evi gateway` as a process: closed unless a token is given or it is opened on purpose (one
line, exit 2); how loudly it says it runs open; /metrics on its own port only; uvicorn's
websocket limits. No broker needed: the gateway keeps serving while Kafka is away."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from evi.settings import REPO_ROOT
from gateway.__main__ import WS_MAX_SIZE, say_how_open
from gateway.settings import GatewaySettings
from tests.gateway.gw import TOKEN, bearer
from tests.helpers import free_port, wait_until

DOWN = "127.0.0.1:1"  # nothing listens: the gateway serves without Kafka


def env(**extra: str) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("EVI_")} | extra


def run(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "evi.cli", "gateway", *args], cwd=REPO_ROOT,
                          text=True, capture_output=True, timeout=60, env=env(**extra),
                          check=False)


def status(url: str, headers: dict[str, str] | None = None) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}),
                                    timeout=3) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return 0


@contextmanager
def running(*args: str, **extra: str) -> Iterator[tuple[int, int, list[str]]]:
    """A gateway on 127.0.0.1: (port, metrics port, its stderr lines once stopped)."""
    port, metrics = free_port(), free_port()
    p = subprocess.Popen(
        [sys.executable, "-m", "evi.cli", "gateway", "--port", str(port), "--metrics-port",
         str(metrics), "--bootstrap-servers", DOWN, *args],
        cwd=REPO_ROOT, text=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        env=env(**extra))
    lines: list[str] = []
    try:
        wait_until(lambda: p.poll() is not None
                   or status(f"http://127.0.0.1:{port}/healthz") == 200, 30, "gateway up")
        assert p.poll() is None, p.communicate(timeout=5)[1]
        yield port, metrics, lines
    finally:
        p.terminate()
        _, err = p.communicate(timeout=30)
        lines += err.splitlines()


def test_no_token_and_not_opened_is_one_line_and_exit_2() -> None:
    out = run("--port", "0", "--metrics-port", "0")
    assert (out.returncode, out.stdout) == (2, "")
    assert out.stderr.splitlines() == [
        "evi: bad config: auth_token: the gateway needs a token: set EVI_AUTH_TOKEN (16+ "
        "characters, e.g. `openssl rand -hex 32`), or open it on purpose with --no-auth "
        "(EVI_AUTH_REQUIRED=false)"]
    short = run("--port", "0", EVI_AUTH_TOKEN="s3cret")
    assert short.returncode == 2 and short.stderr.splitlines() == [
        "evi: bad config: auth_token: the token must be at least 16 printable ASCII characters "
        "without surrounding spaces"]
    both = run("--port", "0", "--no-auth", EVI_AUTH_TOKEN=TOKEN)
    assert both.returncode == 2 and len(both.stderr.splitlines()) == 1
    assert "a token is set and auth is off" in both.stderr


def test_open_on_loopback_says_so_at_info() -> None:
    with running("--no-auth") as (port, _, lines):
        assert status(f"http://127.0.0.1:{port}/api/stats") == 200
    said = [line for line in lines if "auth is off" in line]
    assert len(said) == 1 and " INFO " in said[0] and "loopback (127.0.0.1)" in said[0], lines


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "gateway.example.org"])
def test_open_off_loopback_is_a_warning(host: str, caplog: pytest.LogCaptureFixture) -> None:
    # The words main() logs, without binding anything but 127.0.0.1 in a test.
    caplog.set_level(logging.INFO, "evi.gateway")
    say_how_open(GatewaySettings(host=host, auth_required=False))
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert record.getMessage() == (
        f"auth is off (--no-auth) on {host}: anyone who reaches port 8000 sees every stream "
        f"and every number; set EVI_AUTH_TOKEN instead")
    caplog.clear()
    say_how_open(GatewaySettings(host=host, auth_token=TOKEN))
    assert caplog.records == [], "nothing to say when a token is required"


def test_metrics_on_their_own_port_only() -> None:
    with running(EVI_AUTH_TOKEN=TOKEN) as (port, metrics, _):
        assert status(f"http://127.0.0.1:{port}/metrics") == 404
        assert status(f"http://127.0.0.1:{port}/metrics", bearer()) == 404
        assert status(f"http://127.0.0.1:{port}/api/stats") == 401
        assert status(f"http://127.0.0.1:{port}/docs") == 401
        assert status(f"http://127.0.0.1:{port}/healthz") == 200
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=3) as r:
            text = r.read().decode()
        assert "evi_gateway_ws_clients 0.0" in text and "evi_gateway_kafka_up" in text


def test_a_taken_metrics_port_is_one_line_and_exit_1() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = run("--port", str(free_port()), "--metrics-port", str(port), "--bootstrap-servers",
                  DOWN, EVI_AUTH_TOKEN=TOKEN)
    assert out.returncode == 1
    assert out.stderr.splitlines() == [
        f"evi gateway: cannot serve /metrics on 127.0.0.1:{port}: Address already in use"]


def test_uvicorn_refuses_big_client_frames_before_the_app() -> None:
    with running(EVI_AUTH_TOKEN=TOKEN) as (port, _, _):
        url = f"ws://127.0.0.1:{port}/ws/streams?ids=*"
        for size, reason in ((8 << 10, "client messages are at most 4096 bytes"),
                             (WS_MAX_SIZE + 1, None)):
            with connect(url, additional_headers=bearer(), max_size=1 << 20) as ws:
                ws.recv(timeout=5)  # hello
                ws.send(b"x" * size)
                with pytest.raises(ConnectionClosed) as e:
                    while True:
                        ws.recv(timeout=5)
            assert e.value.rcvd is not None and e.value.rcvd.code == 1009, size
            if reason:
                assert e.value.rcvd.reason == reason
            else:  # uvicorn's own refusal: the frame was never handed to the app
                assert "client messages" not in e.value.rcvd.reason
