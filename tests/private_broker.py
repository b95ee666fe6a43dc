"""A private Kafka broker for tests that stop and start Kafka mid-run.

The shared broker on 127.0.0.1:9092 must never be stopped, so a test that needs an outage runs
its own with the project's script: the same jars (the shared `libs` dir, symlinked), its own
ports, and its own config, data, logs and pid file under the test's tmp dir. `kafka.sh stop`
only ever signals the pid in that private pid file. Used by the gateway and producer outage
tests.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from evi.cli import KAFKA_SCRIPT
from evi.settings import REPO_ROOT, KafkaSettings
from tests.helpers import free_port

SHARED_PORT = 9092


@dataclass
class PrivateBroker:
    root: Path  # its EVI_CACHE_DIR
    port: int
    controller_port: int
    env: dict[str, str] = field(repr=False)

    @property
    def kafka(self) -> KafkaSettings:
        return KafkaSettings(bootstrap_servers=f"127.0.0.1:{self.port}")

    def sh(self, action: str, timeout: float = 150) -> None:
        """`kafka.sh <action>` for this broker only (start, stop, status, ...)."""
        assert action in ("start", "stop", "status"), action
        r = subprocess.run(["bash", str(KAFKA_SCRIPT), action], env=self.env, timeout=timeout,
                           capture_output=True, text=True, check=False)
        if r.returncode != 0:
            # The tail: kafka.sh prints the JVM's own output (fatal errors such as an OOM) last.
            raise AssertionError(f"kafka.sh {action} failed ({r.returncode}):\n{r.stderr[-6000:]}")

    def start(self) -> None:
        self.sh("start")

    def stop(self) -> None:
        self.sh("stop")

    def pid(self) -> int | None:
        try:
            return int((self.root / "kafka" / "kafka.pid").read_text().strip())
        except (OSError, ValueError):
            return None


@contextlib.contextmanager
def private_broker(root: Path, heap: str = "-Xms128m -Xmx256m") -> Iterator[PrivateBroker]:
    """Start a private broker under `root` (a tmp dir) with JVM heap options `heap`; stop it
    when done."""
    shared = Path(os.environ.get("EVI_CACHE_DIR", REPO_ROOT / ".cache")) / "kafka" / "libs"
    if not (shared / ".pom.sha256").exists():
        pytest.fail(f"Kafka jars missing at {shared}: run `deploy/kafka/kafka.sh fetch` first")
    (root / "kafka").mkdir(parents=True)
    (root / "kafka" / "libs").symlink_to(shared)
    port, controller = free_port(), free_port()
    assert SHARED_PORT not in (port, controller) and port != controller
    assert root.resolve() != (REPO_ROOT / ".cache").resolve()
    env = {**os.environ, "EVI_CACHE_DIR": str(root), "EVI_KAFKA_HOST": "127.0.0.1",
           "EVI_KAFKA_PORT": str(port), "EVI_KAFKA_CONTROLLER_PORT": str(controller),
           "EVI_KAFKA_START_TIMEOUT": "90", "EVI_KAFKA_STOP_TIMEOUT": "30",
           "EVI_KAFKA_HEAP_OPTS": heap}
    broker = PrivateBroker(root, port, controller, env)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
