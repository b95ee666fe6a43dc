"""Run `evi gateway` as a child process for a test, on the real broker."""

from __future__ import annotations

import contextlib
import json
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evi.settings import KafkaSettings
from evi.topics import Topics
from tests.helpers import common, evi_process, free_port, http_ok, log_tail, wait_until


@dataclass
class Gateway:
    port: int
    name: str
    pid: int = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def ws(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url(path), timeout=5) as r:
            return json.load(r)

    def text(self, path: str) -> str:
        with urllib.request.urlopen(self.url(path), timeout=5) as r:
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
    env: dict[str, str] | None = None,
) -> Iterator[Gateway]:
    port = port or free_port()
    gw = Gateway(port, name)
    env = {"EVI_PROBE_INTERVAL_S": "0.5", "EVI_KINDS_INTERVAL_S": "1", **(env or {})}
    with evi_process(name, "gateway", "--port", str(port), *common(kafka, topics.prefix),
                     env=env) as proc:
        wait_until(lambda: proc.poll() is not None or http_ok(gw.url("/readyz")), 30,
                   f"gateway {name} ready")
        assert proc.poll() is None, f"gateway exited:\n{gw.log()}"
        gw.pid = proc.pid
        yield gw

