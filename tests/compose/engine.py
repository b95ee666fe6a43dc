"""Drive `docker compose` for tests/compose: a unique project, its env file, bounded commands."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from tests.helpers import REPO, free_port

OVERRIDE = Path(__file__).with_name("stack.yml")


def engine_problem() -> str | None:
    """Why this machine cannot run the stack, or None."""
    if not shutil.which("docker"):
        return "no docker client on PATH (.ci/system-deps installs docker.io)"
    try:
        info = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"],
                              capture_output=True, text=True, timeout=20)
        if info.returncode != 0:
            return f"the Docker engine does not answer: {info.stderr.strip()[-300:]}"
        for plugin in ("compose", "buildx"):
            v = subprocess.run(["docker", plugin, "version"], capture_output=True, text=True,
                               timeout=20)
            if v.returncode != 0:
                return (f"`docker {plugin} version` fails ({v.stderr.strip()[-200:]}): "
                        "deploy/docker/engine.sh builds the plugin")
        base = subprocess.run(["docker", "image", "inspect", "debian:bookworm-slim"],
                              capture_output=True, timeout=20)
        if base.returncode != 0:
            return "no debian:bookworm-slim image: deploy/docker/base-image.sh makes it"
    except subprocess.TimeoutExpired as e:
        return f"`{' '.join(map(str, e.cmd))}` did not answer in {e.timeout} s"
    return None


def extra_ca() -> str | None:
    """The CA bundle this host's pip trusts (PIP_CERT, SSL_CERT_FILE), for the image's pip."""
    for var in ("PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):
        path = os.environ.get(var)
        if path and Path(path).is_file():
            return path
    return None


@dataclass
class Stack:
    """One compose project: its own name, host ports and token; every command bounded."""

    project: str = field(default_factory=lambda: f"evi-test-{uuid.uuid4().hex[:8]}")
    gateway_port: int = field(default_factory=free_port)
    kafka_port: int = field(default_factory=free_port)
    token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    env_file: Path = field(init=False)
    log: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.env_file = REPO / "test-artifacts" / f"{self.project}.env"
        self.env_file.parent.mkdir(parents=True, exist_ok=True)
        lines = {"EVI_AUTH_TOKEN": self.token, "EVI_GATEWAY_PORT": str(self.gateway_port),
                 "EVI_KAFKA_PORT": str(self.kafka_port), "EVI_PUBLISH_ADDR": "127.0.0.1"}
        ca = extra_ca()
        if ca:
            # Inside the project folder: buildx reads no file outside it without consent.
            copy = self.env_file.with_suffix(".ca.pem")
            copy.write_bytes(Path(ca).read_bytes())
            lines["EVI_EXTRA_CA"] = str(copy)
        self.env_file.write_text("".join(f"{k}={v}\n" for k, v in lines.items()))

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    def base(self) -> list[str]:
        return ["docker", "compose", "-p", self.project, "--project-directory", str(REPO),
                "--env-file", str(self.env_file), "-f", str(REPO / "docker-compose.yml"),
                "-f", str(OVERRIDE)]

    def run(self, *args: str, timeout: float = 120, check: bool = True
            ) -> subprocess.CompletedProcess[str]:
        t0 = time.monotonic()
        # The project's .env (a user's token) must not leak in: --env-file replaces it, and the
        # variables compose reads are cleared from this process's environment.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("EVI_", "COMPOSE_"))}
        env["COMPOSE_PROGRESS"] = "plain"
        r = subprocess.run([*self.base(), *args], capture_output=True, text=True,
                           timeout=timeout, env=env, cwd=REPO)
        self.log.append(f"$ docker compose {' '.join(args)}  ({time.monotonic() - t0:.1f} s, "
                        f"rc {r.returncode})\n{r.stdout[-3000:]}{r.stderr[-3000:]}")
        if check and r.returncode != 0:
            raise AssertionError(f"docker compose {' '.join(args)} failed ({r.returncode}):\n"
                                 f"{r.stdout[-2000:]}\n{r.stderr[-4000:]}")
        return r

    def health(self) -> dict[str, str]:
        """service -> the health (or state) of each of its containers, comma-joined."""
        r = self.run("ps", "-a", "--format", "{{.Service}} {{.State}} {{.Health}}", timeout=30)
        out: dict[str, list[str]] = {}
        for line in r.stdout.splitlines():
            service, state, *health = line.split()
            out.setdefault(service, []).append(health[0] if health else state)
        return {k: ",".join(sorted(v)) for k, v in out.items()}

    def leftovers(self) -> list[str]:
        """The project's containers, volumes and networks still in the engine."""
        label = f"label=com.docker.compose.project={self.project}"
        found = []
        for what in (["ps", "-a"], ["volume", "ls"], ["network", "ls"]):
            r = subprocess.run(["docker", *what, "-q", "--filter", label], capture_output=True,
                               text=True, timeout=30, check=True)
            found += [f"{what[0]} {x}" for x in r.stdout.split()]
        return found
