"""`pip install` of evi's wheel into an empty venv, as a user without the checkout would: the
core's lock (requirements/gateway.txt, hash-checked), then the wheel (--no-deps), everything run
from a directory outside the repo. `evi --version` answers, `evi gateway` serves the dashboard
from site-packages and reaches the dev broker, `evi kafka` finds its script in the package, the
cache is the user's cache dir, the processor's and producer's packages are absent and their
commands name the extra to install.

The lock's files are kept in <repo>/.cache/wheelhouse/ (fetched once per lock: pip download),
so a second run installs offline; a cold run downloads ~40 MB."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from evi.settings import KafkaSettings
from tests.deploy.pyproject import pyproject
from tests.deploy.support import REPO
from tests.helpers import free_port, wait_until

pytestmark = pytest.mark.kafka  # `evi gateway` reads the dev broker

LOCK = REPO / "requirements" / "gateway.txt"
WHEELHOUSE = REPO / ".cache" / "wheelhouse" / "gateway"
# What pyproject.toml builds the wheel from (the image's build context holds the same).
SOURCES = ("pyproject.toml", "README.md", "evi", "producers", "processors", "gateway", "web",
           "deploy/kafka")
CODE = ("evi", "producers", "processors", "gateway")
ABSENT = ("openvino", "faust", "aiokafka", "skimage", "cv2", "numpy", "simplejpeg", "nncf")
PIP_S = 600  # a cold download of the core's lock on a slow link; cached runs take seconds


@dataclass(frozen=True)
class Installed:
    wheel: Path
    venv: Path
    cwd: Path  # outside the checkout
    cache: Path  # XDG_CACHE_HOME: the user's cache dir is <it>/evi
    env: dict[str, str]

    def evi(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.venv / "bin" / "evi"), *args], cwd=self.cwd, env=self.env,
                              text=True, capture_output=True, timeout=timeout, check=False)

    def python(self, code: str) -> str:
        out = subprocess.run([str(self.venv / "bin" / "python"), "-c", code], cwd=self.cwd,
                             env=self.env, text=True, capture_output=True, timeout=60,
                             check=True)
        return out.stdout

    @property
    def site_packages(self) -> Path:
        return Path(self.python("import sysconfig; print(sysconfig.get_path('purelib'))").strip())


def run(cmd: list[str | Path], timeout: float, **kw: object) -> None:
    done = subprocess.run([str(c) for c in cmd], text=True, capture_output=True,
                          timeout=timeout, check=False, **kw)  # type: ignore[call-overload]
    assert done.returncode == 0, f"{cmd} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"


def tracked(*paths: str) -> list[str]:
    """The checkout's files under `paths` as git has them (no caches, no local build output)."""
    out = subprocess.run(["git", "ls-files", "-z", "--", *paths], cwd=REPO, check=True,
                         capture_output=True, timeout=30).stdout.decode()
    return sorted(p for p in out.split("\0") if p and (REPO / p).is_file())


def build_wheel(out: Path, src: Path) -> Path:
    """A copy of the sources (pip builds in the source tree: build/ and *.egg-info stay out of
    the checkout), built with the venv's locked setuptools, as the image builds it."""
    for path in SOURCES:
        (src / path).parent.mkdir(parents=True, exist_ok=True)
        if (REPO / path).is_dir():
            shutil.copytree(REPO / path, src / path,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "node_modules"))
        else:
            shutil.copy2(REPO / path, src / path)
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "-q", "-w", out, src], timeout=180)
    wheels = list(out.glob("evi-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def fill_wheelhouse(env: dict[str, str]) -> None:
    """The core lock's files, downloaded once per lock content (a stamp holds its digest); one
    run at a time fills it (checkouts share .cache), the others wait for it."""
    WHEELHOUSE.mkdir(parents=True, exist_ok=True)
    stamp = WHEELHOUSE / ".lock.sha256"
    digest = hashlib.sha256(LOCK.read_bytes()).hexdigest()
    with open(WHEELHOUSE / ".fill.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        if stamp.is_file() and stamp.read_text().strip() == digest:
            return
        run([sys.executable, "-m", "pip", "download", "-q", "--require-hashes", "--no-deps", "-r",
             LOCK, "-d", WHEELHOUSE], timeout=PIP_S, env=env)
        stamp.write_text(digest + "\n")


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("wheel")
    wheel = build_wheel(root / "dist", root / "src")
    venv, cwd, cache = root / "venv", root / "elsewhere", root / "xdg-cache"
    cwd.mkdir()
    # Nothing of this checkout's environment: no PYTHONPATH into it, no EVI_ settings.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("EVI_", "PYTHON", "VIRTUAL_ENV"))}
    env |= {"XDG_CACHE_HOME": str(cache), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    # Empty: not even pip (the lock brings the pinned one). This venv's pip installs into it,
    # without compiling to bytecode: 5x faster than ensurepip and a compiling install.
    run([sys.executable, "-m", "venv", "--without-pip", venv], timeout=120, env=env)
    pip: list[str | Path] = [sys.executable, "-m", "pip", "--python", venv / "bin" / "python",
                             "install", "-q", "--no-compile", "--no-index"]
    fill_wheelhouse(env)
    run([*pip, "--find-links", WHEELHOUSE, "--require-hashes", "-r", LOCK], timeout=PIP_S,
        env=env, cwd=cwd)
    run([*pip, "--no-deps", wheel], timeout=120, env=env, cwd=cwd)
    return Installed(wheel, venv, cwd, cache, env)


def test_the_wheel_carries_every_module_the_dashboard_and_the_broker_files(
    installed: Installed,
) -> None:
    inside = set(zipfile.ZipFile(installed.wheel).namelist())
    modules = [p for p in tracked(*CODE) if p.endswith(".py")]
    assert len(modules) > 50 and [m for m in modules if m not in inside] == []
    web = tracked("web")
    kafka = tracked("deploy/kafka")
    assert "web/index.html" in web and "deploy/kafka/kafka.sh" in kafka
    assert "deploy/kafka/pom.xml" in kafka and "deploy/kafka/AclBatch.java" in kafka
    expected = ([f"evi/_data/{p}" for p in web]
                + [f"evi/_data/kafka/{p.removeprefix('deploy/kafka/')}" for p in kafka])
    assert [p for p in expected if p not in inside] == []
    data = sorted(p for p in inside if p.startswith("evi/_data/"))
    assert data == sorted(expected), "the wheel carries files the checkout does not track"


def test_the_installed_evi_says_its_version_and_its_commands(installed: Installed) -> None:
    out = installed.evi("--version")
    assert (out.returncode, out.stdout, out.stderr) == (
        0, f"evi {pyproject()['project']['version']}\n", "")
    usage = installed.evi("--help")
    assert (usage.returncode, usage.stderr) == (0, "")
    assert {"gateway", "kafka", "process", "produce"} <= {
        line.split()[0] for line in usage.stdout.splitlines() if line.startswith("  ")}


def test_the_core_install_lacks_the_services_heavy_packages(installed: Installed) -> None:
    found = json.loads(installed.python(
        "import importlib.util, json, evi; print(json.dumps({'evi': evi.__file__, 'found': "
        f"[m for m in {list(ABSENT)!r} if importlib.util.find_spec(m)]}}))"))
    assert found["found"] == []
    assert Path(found["evi"]).is_relative_to(installed.site_packages)


@pytest.mark.parametrize(("command", "extras"), [
    (["process", "--kind", "face"], "processor"),
    (["models", "list"], "processor"),
    (["produce", "--source", "sample:"], "producer"),
    (["sample", "--out", "x.avi"], "producer"),
    (["dev"], "processor,producer"),
])
def test_a_command_without_its_extra_names_the_pip_install(
    installed: Installed, command: list[str], extras: str,
) -> None:
    out = installed.evi(*command)
    assert (out.returncode, out.stdout) == (1, "")
    lines = out.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"evi {command[0]}: needs pip install 'evi[{extras}]' (not installed: "), out.stderr


def test_the_installed_cache_is_the_users_cache_dir(installed: Installed) -> None:
    out = installed.evi("gateway", "--no-auth", "--print-settings")
    assert out.returncode == 0, out.stderr
    s = json.loads(out.stdout)
    assert Path(s["cache_dir"]) == installed.cache / "evi"
    assert Path(s["web_dir"]) == installed.site_packages / "evi" / "_data" / "web"


def test_evi_kafka_runs_the_script_the_package_carries(
    installed: Installed, kafka: KafkaSettings,
) -> None:
    host, port = kafka.bootstrap_servers.split(",")[0].rsplit(":", 1)
    env = installed.env | {"EVI_KAFKA_HOST": host, "EVI_KAFKA_PORT": port}
    out = subprocess.run([str(installed.venv / "bin" / "evi"), "kafka", "status"],
                         cwd=installed.cwd, env=env, text=True, capture_output=True, timeout=60,
                         check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.startswith(f"kafka: running on {host}:{port}"), out.stdout


def get(url: str) -> tuple[int, str, bytes]:
    with urllib.request.urlopen(url, timeout=5) as r:
        return int(r.status), str(r.headers.get("content-type", "")), r.read()


def up(url: str) -> bool:
    try:
        return get(url)[0] == 200
    except OSError:
        return False


@pytest.fixture
def gateway(installed: Installed, kafka: KafkaSettings) -> Iterator[str]:
    port = free_port()
    log = installed.cwd / f"gateway-{port}.log"
    with open(log, "wb") as out:
        p = subprocess.Popen(
            [str(installed.venv / "bin" / "evi"), "gateway", "--no-auth", "--host", "127.0.0.1",
             "--port", str(port), "--metrics-port", "0", "--bootstrap-servers",
             kafka.bootstrap_servers, "--topic-prefix", f"t{uuid.uuid4().hex[:10]}"],
            cwd=installed.cwd, env=installed.env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: p.poll() is not None or up(f"{base}/healthz"), 30, "gateway up")
        assert p.poll() is None, log.read_text()
        yield base
    finally:
        p.terminate()
        p.wait(30)


def test_the_installed_gateway_serves_the_dashboard_from_site_packages(gateway: str) -> None:
    status, kind, page = get(f"{gateway}/")
    assert (status, kind.split(";")[0]) == (200, "text/html")
    assert page == (REPO / "web" / "index.html").read_bytes()
    refs = re.findall(rb'(?:src|href)="([^":#]+)"', page)
    assert b"style.css" in refs and any(r.endswith(b".js") for r in refs), refs
    served = 0
    for rel in tracked("web"):  # every asset, the modules app.js imports included
        status, _, body = get(f"{gateway}/{rel.removeprefix('web/')}")
        assert (status, body) == (200, (REPO / rel).read_bytes()), rel
        served += 1
    assert served == len(tracked("web")) >= 3


def test_the_installed_gateway_reaches_the_broker(gateway: str) -> None:
    def kafka_ok() -> bool:
        return bool(json.loads(get(f"{gateway}/api/stats")[2])["kafka"])

    wait_until(kafka_ok, 30, "the gateway's Kafka probe")
