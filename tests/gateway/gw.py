"""Run `evi gateway` as a child process for a test, on the real broker, with a token (or open
with --no-auth when `token=None`) and /metrics on a port of its own."""

from __future__ import annotations

import contextlib
import json
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from websockets.sync.client import ClientConnection, connect

from evi.settings import KafkaSettings
from evi.topics import Topics
from tests.helpers import common, evi_process, free_port, http_ok, log_tail, wait_until

TOKEN = "gw-test-token-6f1c2a9e4b7d"


def bearer(token: str | None = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


@dataclass
class Gateway:
    port: int
    name: str
    pid: int = 0
    metrics_port: int = 0
    token: str | None = TOKEN

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def dashboard(self) -> str:
        """The link `evi dev` prints: the token in the fragment (never sent to a server)."""
        return self.url(f"/#token={self.token}" if self.token else "/")

    def ws(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    def connect(self, path: str, **kw: Any) -> ClientConnection:
        """A websocket client with the bearer token, as an API client would connect."""
        return connect(self.ws(path), additional_headers=bearer(self.token), **kw)

    def _open(self, path: str) -> Any:
        req = urllib.request.Request(self.url(path), headers=bearer(self.token))
        return urllib.request.urlopen(req, timeout=5)

    def get(self, path: str) -> Any:
        with self._open(path) as r:
            return json.load(r)

    def text(self, path: str) -> str:
        with self._open(path) as r:
            return str(r.read().decode())

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as r:
            return str(r.read().decode())

    def rss_kib(self) -> int:
        """The gateway process's resident set size."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def log(self) -> str:
        return log_tail(self.name, 60)


@contextlib.contextmanager
def gateway(
    kafka: KafkaSettings, topics: Topics, name: str, port: int | None = None,
    env: dict[str, str] | None = None, token: str | None = TOKEN,
) -> Iterator[Gateway]:
    port = port or free_port()
    gw = Gateway(port, name, metrics_port=free_port(), token=token)
    env = {"EVI_PROBE_INTERVAL_S": "0.5", "EVI_KINDS_INTERVAL_S": "1",
           **({"EVI_AUTH_TOKEN": token} if token else {}), **(env or {})}
    auth = [] if token else ["--no-auth"]
    with evi_process(name, "gateway", "--port", str(port), "--metrics-port",
                     str(gw.metrics_port), *auth, *common(kafka, topics.prefix),
                     env=env) as proc:
        wait_until(lambda: proc.poll() is not None or http_ok(gw.url("/readyz")), 30,
                   f"gateway {name} ready")
        assert proc.poll() is None, f"gateway exited:\n{gw.log()}"
        gw.pid = proc.pid
        yield gw
