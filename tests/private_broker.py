"""Private Kafka brokers for tests that stop, kill or secure Kafka mid-run.

The shared broker on 127.0.0.1:9092 must never be stopped, so a test that needs an outage runs
its own with the project's script: the same jars (the shared `libs` dir, symlinked), its own
ports, and its own config, data, logs and pid files under the test's tmp dir. `kafka.sh stop`
only ever signals the pid in that private pid file.

- `private_broker`: one node, plaintext (the outage tests) or SASL_SSL with ACLs
  (tests/security), where `as_user(name)` gives a principal's client settings.
- `private_cluster`: N combined broker+controller nodes (tests/kafka_cluster), with `kill(node)`
  (SIGKILL), `start()` and the partitions' leaders and ISRs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient
from pydantic import SecretStr

from evi.cli import KAFKA_SCRIPT
from evi.settings import REPO_ROOT, KafkaSettings
from tests.helpers import free_ports

ACTIONS = ("start", "stop", "status", "acls", "certs")


def _shared_libs() -> Path:
    shared = Path(os.environ.get("EVI_CACHE_DIR", REPO_ROOT / ".cache")) / "kafka" / "libs"
    if not (shared / ".pom.sha256").exists():
        pytest.fail(f"Kafka jars missing at {shared}: run `deploy/kafka/kafka.sh fetch` first")
    return shared


def _private_root(root: Path) -> None:
    assert root.resolve() != (REPO_ROOT / ".cache").resolve()
    (root / "kafka").mkdir(parents=True)
    (root / "kafka" / "libs").symlink_to(_shared_libs())


def _run(env: dict[str, str], *args: str, timeout: float) -> str:
    r = subprocess.run(["bash", str(KAFKA_SCRIPT), *args], env=env, timeout=timeout,
                       capture_output=True, text=True, check=False)  # fmt: skip
    if r.returncode != 0:
        # The tail: kafka.sh prints the JVM's own output (fatal errors such as an OOM) last.
        raise AssertionError(f"kafka.sh {' '.join(args)} failed ({r.returncode}):\n"
                             f"{r.stderr[-6000:]}")  # fmt: skip
    return r.stdout


@dataclass
class PrivateBroker:
    root: Path  # its EVI_CACHE_DIR
    port: int
    controller_port: int
    env: dict[str, str] = field(repr=False)
    security: str = "plaintext"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def kafka(self) -> KafkaSettings:
        """Client settings of the super user (`admin` when the broker is SASL_SSL)."""
        return self.as_user("admin") if self.security == "sasl_ssl" else KafkaSettings(
            bootstrap_servers=self.bootstrap)

    @property
    def security_dir(self) -> Path:
        return self.root / "kafka" / "security"

    @property
    def ca_file(self) -> Path:
        """The CA the clients trust (made by `kafka.sh certs`)."""
        return self.security_dir / "ca.crt"

    def password(self, user: str) -> str:
        return (self.security_dir / f"{user}.password").read_text().strip()

    def as_user(self, user: str, password: str | None = None) -> KafkaSettings:
        """SASL_SSL + SCRAM-SHA-512 settings of `user` (its own password unless given)."""
        return KafkaSettings(
            bootstrap_servers=self.bootstrap, security_protocol="SASL_SSL",
            sasl_mechanism="SCRAM-SHA-512", sasl_username=user,
            sasl_password=SecretStr(password if password is not None else self.password(user)),
            ssl_cafile=self.ca_file,
        )  # fmt: skip

    def user_env(self, user: str) -> dict[str, str]:
        """The EVI_KAFKA__* variables of `user` (kafka.sh writes them to <user>.env)."""
        lines = (self.security_dir / f"{user}.env").read_text().splitlines()
        return dict(line.split("=", 1) for line in lines if "=" in line)

    def sh(self, action: str, *args: str, timeout: float = 150) -> str:
        """`kafka.sh <action>` for this broker only (start, stop, status, acls, certs)."""
        assert action in ACTIONS, action
        return _run(self.env, action, *args, timeout=timeout)

    def start(self) -> None:
        self.sh("start")

    def stop(self) -> None:
        self.sh("stop")

    def acls(self, prefix: str) -> None:
        """Grant the evi principals their ACLs on the topics and groups of `prefix`."""
        self.sh("acls", prefix, timeout=90)

    def pid(self) -> int | None:
        try:
            return int((self.root / "kafka" / "kafka.pid").read_text().strip())
        except (OSError, ValueError):
            return None


@contextlib.contextmanager
def private_broker(root: Path, heap: str = "-Xms128m -Xmx256m",
                   security: str = "plaintext") -> Iterator[PrivateBroker]:  # fmt: skip
    """Start a private broker under `root` (a tmp dir) with JVM heap options `heap` and
    `security` plaintext or sasl_ssl (certificates, users and the `evi` prefix's ACLs made by
    kafka.sh); stop it when done."""
    _private_root(root)
    port = free_ports(2)
    controller = port + 1
    env = {**os.environ, "EVI_CACHE_DIR": str(root), "EVI_KAFKA_HOST": "127.0.0.1",
           "EVI_KAFKA_PORT": str(port), "EVI_KAFKA_CONTROLLER_PORT": str(controller),
           "EVI_KAFKA_START_TIMEOUT": "90", "EVI_KAFKA_STOP_TIMEOUT": "30",
           "EVI_KAFKA_HEAP_OPTS": heap, "EVI_KAFKA_SECURITY": security}
    broker = PrivateBroker(root, port, controller, env, security)
    try:
        broker.start()
        yield broker
    finally:
        broker.stop()


@dataclass(frozen=True)
class PartitionState:
    leader: int  # -1 while it has none
    replicas: tuple[int, ...]
    isr: tuple[int, ...]


@dataclass
class PrivateCluster:
    root: Path
    size: int
    port: int  # client port of node 1; node i listens on port + i - 1
    env: dict[str, str] = field(repr=False)

    @property
    def nodes(self) -> list[int]:
        return list(range(1, self.size + 1))

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{self.port + i - 1}" for i in self.nodes)

    @property
    def kafka(self) -> KafkaSettings:
        return KafkaSettings(bootstrap_servers=self.bootstrap)

    def node_home(self, node: int) -> Path:
        return self.root / "kafka" / "cluster" / f"node{node}"

    def cluster(self, action: str, *args: str, timeout: float = 150) -> str:
        return _run(self.env, "cluster", action, *args, timeout=timeout)

    def start(self) -> None:
        """Start every node that is not running (all at first; a killed one later); wait for all."""
        self.cluster("start", str(self.size))

    def stop(self) -> None:
        self.cluster("stop")

    def pid(self, node: int) -> int | None:
        try:
            return int((self.node_home(node) / "kafka.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def kill(self, node: int) -> None:
        """SIGKILL node `node` (no shutdown: its controller and broker vanish at once)."""
        pid = self.pid(node)
        assert pid is not None, f"node {node} has no pid"
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)  # not our child (setsid): just wait for it to go
            time.sleep(0.05)
        assert not Path(f"/proc/{pid}").exists(), f"node {node} (pid {pid}) survived SIGKILL"

    def partitions(self, topic: str, timeout: float = 10.0) -> dict[int, PartitionState]:
        """Each partition's leader, replicas and in-sync replicas, as the metadata has them
        (empty while the metadata does not know the topic yet)."""
        md = AdminClient(self.kafka.client_config()).list_topics(topic, timeout=timeout)
        t = md.topics.get(topic)
        if t is None or t.error is not None:
            return {}
        return {p: PartitionState(m.leader, tuple(m.replicas), tuple(m.isrs))
                for p, m in t.partitions.items()}  # fmt: skip

    def leader_counts(self, topic: str) -> dict[int, int]:
        """Partitions each node leads (every node listed, 0 for none)."""
        counts = Counter(s.leader for s in self.partitions(topic).values())
        return {n: counts.get(n, 0) for n in self.nodes}


@contextlib.contextmanager
def private_cluster(root: Path, size: int = 3,
                    heap: str = "-Xms128m -Xmx256m") -> Iterator[PrivateCluster]:  # fmt: skip
    """Start a `size`-node KRaft cluster under `root` (a tmp dir), each node in `heap`; stop
    every node when done."""
    _private_root(root)
    port, controller = free_ports(size), free_ports(size)
    assert not set(range(port, port + size)) & set(range(controller, controller + size))
    env = {**os.environ, "EVI_CACHE_DIR": str(root), "EVI_KAFKA_HOST": "127.0.0.1",
           "EVI_KAFKA_CLUSTER_PORT": str(port),
           "EVI_KAFKA_CLUSTER_CONTROLLER_PORT": str(controller),
           "EVI_KAFKA_START_TIMEOUT": "90", "EVI_KAFKA_STOP_TIMEOUT": "30",
           "EVI_KAFKA_HEAP_OPTS": heap}  # fmt: skip
    env.pop("EVI_KAFKA_SECURITY", None)
    cluster = PrivateCluster(root, size, port, env)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
