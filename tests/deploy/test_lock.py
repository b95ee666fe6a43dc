"""The supply chain: requirements/{runtime,gateway,quantize,dev}.txt (`make lock`) pin every
package with its hashes, agree with pyproject.toml, and are what the Makefile and the images
install (runtime: the full image, core + processor + producer extras; gateway: a slim gateway
image, the core only; quantize in the image's INT8 build stage only). Offline: a lock that
pyproject.toml has moved past fails here with the fix (`make lock`)."""

from __future__ import annotations

import re
from importlib.metadata import version as installed_version

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.deploy.pyproject import direct, names, pyproject, wanted
from tests.deploy.support import REPO

LOCKS = REPO / "requirements"
# at-least-once rests on these libraries' internals (docs/processors.md,
# tests/processors/test_app_faust.py): exact versions in pyproject.toml, not ranges.
EXACT = ("faust-streaming", "aiokafka", "confluent-kafka")
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def parse_lock(name: str) -> dict[str, tuple[str, set[str]]]:
    """package -> (version, hashes); every requirement is `name==version` with hashes."""
    out: dict[str, tuple[str, set[str]]] = {}
    current = ""
    for raw in (LOCKS / name).read_text().splitlines():
        line = raw.strip().rstrip("\\").strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("--hash=sha256:"):
            digest = line.removeprefix("--hash=sha256:")
            assert current and re.fullmatch(r"[0-9a-f]{64}", digest), (name, raw)
            out[current][1].add(digest)
            continue
        m = PIN.match(line)
        assert m, f"{name}: {raw!r} is not an exact pin (`make lock` writes only those)"
        current = str(canonicalize_name(m.group(1)))
        assert current not in out, f"{name}: {current} twice"
        out[current] = (m.group(2), set())
    for package, (_, hashes) in out.items():
        assert hashes, f"{name}: {package} has no hash (pip --require-hashes would refuse it)"
    return out


@pytest.fixture(scope="module")
def runtime() -> dict[str, tuple[str, set[str]]]:
    return parse_lock("runtime.txt")


@pytest.fixture(scope="module")
def gateway() -> dict[str, tuple[str, set[str]]]:
    return parse_lock("gateway.txt")


@pytest.fixture(scope="module")
def dev() -> dict[str, tuple[str, set[str]]]:
    return parse_lock("dev.txt")


@pytest.fixture(scope="module")
def quantize() -> dict[str, tuple[str, set[str]]]:
    return parse_lock("quantize.txt")


def check_covered(reqs: list[Requirement], lock: dict[str, tuple[str, set[str]]],
                  name: str) -> None:
    for req in reqs:
        package = str(canonicalize_name(req.name))
        assert package in lock, f"{req} is not in requirements/{name}: run `make lock`"
        locked = lock[package][0]
        assert req.specifier.contains(locked, prereleases=True), (
            f"requirements/{name} has {package}=={locked}, pyproject.toml asks {req}: "
            "run `make lock`")


# What a slim gateway image must not carry (issue: the gateway image without OpenVINO, faust or
# scikit-image); none of them is a dependency of the core's packages either.
NOT_IN_GATEWAY = ("openvino", "faust-streaming", "aiokafka", "scikit-image",
                  "opencv-python-headless", "simplejpeg", "numpy", "nncf")


def test_the_runtime_lock_covers_every_service(runtime: dict[str, tuple[str, set[str]]]) -> None:
    check_covered(wanted("processor", "producer"), runtime, "runtime.txt")
    check_covered(wanted("all"), runtime, "runtime.txt")
    assert "nncf" not in runtime and "pytest" not in runtime


def test_the_gateway_lock_is_the_core_only(gateway: dict[str, tuple[str, set[str]]]) -> None:
    check_covered(wanted(), gateway, "gateway.txt")
    assert [p for p in NOT_IN_GATEWAY if p in gateway] == []
    assert {"confluent-kafka", "fastapi", "uvicorn", "platformdirs", "typer"} <= set(gateway)


def test_the_extras_split_the_heavy_packages_off_the_core() -> None:
    assert [p for p in NOT_IN_GATEWAY if p in names(wanted())] == []
    processor, producer = names(wanted("processor")), names(wanted("producer"))
    assert {"openvino", "faust-streaming", "aiokafka"} <= processor
    assert "scikit-image" in producer and "openvino" not in producer


def test_the_gateway_image_runs_what_the_full_image_runs(
    gateway: dict[str, tuple[str, set[str]]], runtime: dict[str, tuple[str, set[str]]],
) -> None:
    for package, pinned in gateway.items():
        assert runtime.get(package) == pinned, f"{package}: gateway and runtime locks differ"


def test_the_dev_lock_covers_the_project_its_dev_tools_and_quantizer(
    dev: dict[str, tuple[str, set[str]]],
) -> None:
    check_covered(wanted(*pyproject()["project"]["optional-dependencies"]), dev, "dev.txt")
    assert "uv" in dev, "`make lock` runs the locked uv"


def test_the_quantize_lock_covers_the_services_and_nncf(
    quantize: dict[str, tuple[str, set[str]]],
) -> None:
    check_covered(wanted("quantize"), quantize, "quantize.txt")
    check_covered(wanted("processor", "producer"), quantize, "quantize.txt")


def test_the_image_runs_what_the_tests_ran(runtime: dict[str, tuple[str, set[str]]],
                                            dev: dict[str, tuple[str, set[str]]]) -> None:
    for package, (version, hashes) in runtime.items():
        assert package in dev, f"{package} is in the image's lock only"
        assert dev[package] == (version, hashes), f"{package}: runtime and dev locks differ"


def test_the_image_quantises_with_what_the_tests_ran(
    runtime: dict[str, tuple[str, set[str]]], quantize: dict[str, tuple[str, set[str]]],
    dev: dict[str, tuple[str, set[str]]],
) -> None:
    """The quantize stage installs its lock over the runtime venv: it may add packages (NNCF's),
    never change one, and every one is the dev lock's, so its IR is what `make test` makes
    (the IR's record digests the NNCF and OpenVINO versions)."""
    for package, pinned in runtime.items():
        assert quantize.get(package) == pinned, f"{package}: runtime and quantize locks differ"
    for package, pinned in quantize.items():
        assert dev.get(package) == pinned, f"{package}: quantize and dev locks differ"
    added = set(quantize) - set(runtime)
    assert "nncf" in added and "nncf" not in runtime


def test_the_installer_and_build_backend_are_locked(
    runtime: dict[str, tuple[str, set[str]]], quantize: dict[str, tuple[str, set[str]]],
    dev: dict[str, tuple[str, set[str]]], gateway: dict[str, tuple[str, set[str]]],
) -> None:
    tools = [line.strip() for line in (LOCKS / "tools.in").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    backend = pyproject()["build-system"]["requires"]
    assert {str(canonicalize_name(Requirement(r).name)) for r in backend} <= {
        str(canonicalize_name(Requirement(t).name)) for t in tools}
    for lock in (runtime, gateway, quantize, dev):
        check_covered(direct([*tools, *backend]), lock, "the locks")


def test_kafka_libraries_are_exact_and_installed(dev: dict[str, tuple[str, set[str]]]) -> None:
    pins = {str(canonicalize_name(r.name)): r for r in wanted("processor")}
    for package in EXACT:
        spec = list(pins[package].specifier)
        assert len(spec) == 1 and spec[0].operator == "==", f"pyproject.toml: {pins[package]}"
        assert dev[package][0] == spec[0].version
        assert installed_version(package) == spec[0].version, (
            f"this venv has {package} {installed_version(package)}: `make` installs the lock")


def test_make_and_ci_install_the_lock() -> None:
    makefile = (REPO / "Makefile").read_text()
    stamp = re.search(r"^\$\(STAMP\): (.*)$", makefile, re.M)
    assert stamp and "requirements/dev.txt" in stamp.group(1).split()
    recipe = makefile[stamp.end():].split("\n\n")[0]
    installs = [line.strip() for line in recipe.splitlines() if "pip install" in line]
    assert installs == ["$(PY) -m pip install -q --require-hashes -r requirements/dev.txt",
                        "$(PY) -m pip install -q --no-deps --no-build-isolation -e ."]
    assert "make test" in (REPO / ".ci" / "run").read_text()
    lock = re.search(r"^lock: .*$", makefile, re.M)
    assert lock, "no `lock` target"
    lock_recipe = makefile[lock.end():].split("\n\n")[0]
    for name in ("runtime.txt", "gateway.txt", "quantize.txt", "dev.txt"):
        assert f"-o requirements/{name}" in lock_recipe, f"`make lock` does not write {name}"
        assert "make lock" in (LOCKS / name).read_text().split("\n", 3)[1], name
