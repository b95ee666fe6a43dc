"""deploy/docker/Dockerfile and .dockerignore, read without a Docker engine: the stages, what
reaches the final image (the fetched models, the INT8 IR, the runtime venv without NNCF), that
every dependency comes from a hash-checked lock, and that every file it copies is in the build
context."""

from __future__ import annotations

import fnmatch
import importlib
import re
import tomllib
from pathlib import Path, PurePosixPath

import pytest

from evi.cli import SERVICES
from gateway.settings import GatewaySettings
from processors.models import default_models
from processors.quantize import int8_models, record_path
from processors.settings import ProcessorSettings
from tests.deploy import image
from tests.deploy.dockerfile import Stage, parse
from tests.deploy.support import DOCKERFILE, REPO
from tests.deploy.test_lock import parse_lock

COMPILERS = re.compile(r"\b(build-essential|gcc|g\+\+|clang|make|cmake)\b")


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    args, stages = parse(DOCKERFILE)
    assert args == {"PYTHON_IMAGE": "python:3.11-slim"}
    return stages


def stage(stages: list[Stage], name: str) -> Stage:
    (found,) = [s for s in stages if s.name == name]
    return found


def ignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore rule: the last pattern matching the path or a parent wins."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        glob = pattern.lstrip("!").rstrip("/")
        regex = fnmatch.translate(glob).replace(".*", "[^/]*").replace("[^/]*[^/]*", ".*")
        if glob.startswith("**/"):
            regex = "(.*/)?" + fnmatch.translate(glob[3:]).replace(".*", "[^/]*")
        if any(re.fullmatch(regex, c) for c in candidates):
            result = not negate
    return result


def dockerignore() -> list[str]:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_ignore_rules_behave_like_docker() -> None:
    patterns = ["*", "!evi/", "!web/", "**/__pycache__", "web/dist"]
    assert ignored("tests/x.py", patterns)
    assert not ignored("evi/cli.py", patterns)
    assert not ignored("web/index.html", patterns)
    assert ignored("evi/__pycache__/cli.pyc", patterns)
    assert ignored("web/dist/a.js", patterns)
    assert not ignored("web/dist/a.js", [*patterns, "!web/"])  # the last match wins


def test_stages(stages: list[Stage]) -> None:
    assert [(s.base, s.name) for s in stages] == [("scratch", "source"),
                                                  ("python:3.11-slim", "python"),
                                                  ("python", "builder"),
                                                  ("builder", "build"),
                                                  ("build", "quantize"),
                                                  ("builder", "gateway-build"),
                                                  ("python", "gateway"),
                                                  ("python", "final")]
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    assert requires == ">=3.11"


def test_final_stage_runs_evi_as_an_unprivileged_user(stages: list[Stage]) -> None:
    final = stages[-1]
    (user,) = final.all("USER")
    uid = user.args.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "numeric, so runAsNonRoot can check it"
    assert int(uid) == 10001  # tests/deploy/test_k8s_wiring.py: runAsUser
    (entrypoint,) = final.all("ENTRYPOINT")
    assert entrypoint.words() == ["evi"]
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["evi"] == "evi.cli:main"
    for command in ("produce", "process", "gateway"):
        assert command in SERVICES


def test_no_compiler_in_the_final_stage(stages: list[Stage]) -> None:
    final = stages[-1]
    for run in final.all("RUN"):
        assert not COMPILERS.search(run.args), run.args
        assert "apt-get install" not in run.args and "pip install" not in run.args
    for copy in final.all("COPY"):
        assert copy.flags.get("from") in (None, "build", "quantize"), copy.flags


def test_models_are_fetched_at_build_time(stages: list[Stage]) -> None:
    build, final = stage(stages, "build"), stages[-1]
    runs = [words for r in build.all("RUN") for _, words in image.commands(r)]
    assert ["evi", "models", "fetch"] in runs
    module, func, _ = SERVICES["models"]
    assert hasattr(importlib.import_module(module), func), "`evi models` must exist to fetch"
    cache = build.env()["EVI_CACHE_DIR"]
    assert final.env()["EVI_CACHE_DIR"] == cache
    copies = [c.words() for c in final.all("COPY") if c.flags.get("from") == "build"]
    assert [f"{cache}/models", f"{cache}/models"] in copies
    assert ["/opt/venv", "/opt/venv"] in copies


def test_the_int8_ir_of_every_quantize_from_entry_is_in_the_final_stage(
    stages: list[Stage],
) -> None:
    """`evi models quantize` runs in the quantize stage, and the final stage gets the IR (.xml,
    .bin) and record (.json) of every INT8 entry of the built-in catalog, and nothing else of
    that stage: no lock file, no venv."""
    quantize, final = stage(stages, "quantize"), stages[-1]
    runs = [words for r in quantize.all("RUN") for _, words in image.commands(r)]
    assert ["evi", "models", "quantize"] in runs, "all kinds: no --kind, no --models-file"
    cache = PurePosixPath(final.env()["EVI_CACHE_DIR"])
    entries = int8_models(default_models())
    assert {m.name for _, m in entries} >= {"blazeface-short-int8", "blazeface-full-int8",
                                            "pose-int8"}
    wanted = set()
    for _, m in entries:
        xml = m.resolve_path(Path(cache))
        assert xml.parent == Path(cache / "models" / "int8"), m.name
        wanted |= {PurePosixPath(p) for p in (xml, xml.with_suffix(".bin"), record_path(xml))}
    built = image.build(stages)
    assert wanted <= built["final"].files
    from_quantize = [c.words() for c in final.all("COPY") if c.flags.get("from") == "quantize"]
    assert from_quantize == [[f"{cache}/models/int8", f"{cache}/models/int8"]]
    int8 = {f for f in built["final"].files if cache / "models" / "int8" in f.parents}
    assert int8 == wanted, "only the IR and its record reach the final image"


def test_nncf_is_not_in_the_final_venv(stages: list[Stage]) -> None:
    """The final stage's venv is the build stage's (runtime lock only); NNCF is installed in the
    quantize stage, whose venv stays there."""
    built = image.build(stages)
    final = built["final"]
    assert final.locks == ["requirements/runtime.txt"]
    assert not any("nncf" in parse_lock(Path(lock).name) for lock in final.locks)
    assert not any("nncf" in " ".join(words) for words in final.installs)
    assert "nncf" in parse_lock("quantize.txt") and "nncf" not in parse_lock("runtime.txt")
    assert built["quantize"].locks == ["requirements/runtime.txt", "requirements/quantize.txt"]
    venv_copies = [c for s in stages for c in s.all("COPY") if c.words()[0] == "/opt/venv"]
    assert [(c.flags, c.words()) for c in venv_copies] == [
        ({"from": "gateway-build"}, ["/opt/venv", "/opt/venv"]),
        ({"from": "build"}, ["/opt/venv", "/opt/venv"])]


def test_both_venvs_build_the_project_from_one_list_of_its_files(stages: list[Stage]) -> None:
    """The project's files are named once (stage `source`); each stage that `pip install .`s
    copies all of them, after its lock layer, and no other stage names them."""
    source = stage(stages, "source")
    named = {src for c in source.all("COPY") for src in c.words()[:-1]}
    assert named == {"pyproject.toml", "README.md", "evi", "producers", "processors", "gateway",
                     "web", "deploy/kafka"}
    for name in ("build", "gateway-build"):
        s = stage(stages, name)
        from_source = [c.words() for c in s.all("COPY") if c.flags.get("from") == "source"]
        assert from_source == [["/src", "./"]]
        assert "pip install --no-deps --no-build-isolation ." in pip_installs(s)
    for s in stages:
        if s.name != "source":
            plain = {src for c in s.all("COPY") if not c.flags for src in c.words()[:-1]}
            assert not plain & (named - {"web"}), (s.name, plain & named)


def test_the_gateway_image_has_the_core_dependencies_only(stages: list[Stage]) -> None:
    """The gateway target installs requirements/gateway.txt alone: no OpenVINO, faust, OpenCV,
    scikit-image or NNCF, and it copies no model."""
    built = image.build(stages)
    assert built["gateway-build"].locks == ["requirements/gateway.txt"]
    core = parse_lock("gateway.txt")
    for heavy in ("openvino", "faust-streaming", "opencv-python-headless", "scikit-image", "nncf"):
        assert heavy not in core and heavy in parse_lock("dev.txt"), heavy
    gateway = next(s for s in stages if s.name == "gateway")
    copies = [c.words() for c in gateway.all("COPY")]
    assert copies == [["/opt/venv", "/opt/venv"]], copies


def test_web_assets_are_where_the_gateway_looks(stages: list[Stage]) -> None:
    final = stages[-1]
    web_dir = final.env()["EVI_WEB_DIR"]
    assert "web_dir" in GatewaySettings.model_fields
    copies = [c.words() for c in final.all("COPY") if not c.flags]
    assert ["web", web_dir] in copies
    assert (REPO / "web" / "index.html").is_file()


def test_writable_dirs_belong_to_the_user(stages: list[Stage]) -> None:
    final = stages[-1]
    cache = final.env()["EVI_CACHE_DIR"]
    script = " ".join(r.args for r in final.all("RUN"))
    for sub in ("faust", "ov-cache"):
        assert f"{cache}/{sub}" in script
    assert "chown -R 10001:0" in script


def test_ports(stages: list[Stage]) -> None:
    (expose,) = stages[-1].all("EXPOSE")
    ports = {int(p) for p in expose.args.split()}
    assert ports == {GatewaySettings.model_fields["port"].default,
                     GatewaySettings.model_fields["metrics_port"].default,
                     ProcessorSettings.model_fields["web_port"].default, 9101}


def test_every_copied_file_is_in_the_build_context(stages: list[Stage]) -> None:
    patterns = dockerignore()
    for stage in stages:
        for copy in stage.all("COPY"):
            if copy.flags.get("from"):
                continue
            *sources, _ = copy.words()
            for source in sources:
                path = REPO / source
                assert path.exists(), source
                files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
                kept = [f for f in files if not ignored(str(f.relative_to(REPO)), patterns)]
                assert kept, f"{source} is excluded by .dockerignore"
                if path.is_dir():
                    assert not [f for f in kept if "__pycache__" in f.parts]


def test_context_excludes_what_the_image_must_not_carry() -> None:
    patterns = dockerignore()
    for path in (".venv/bin/python", ".cache/models/x.tflite", ".git/HEAD", "tests/conftest.py",
                 "deploy/k8s/base/kustomization.yaml", "test-artifacts/logs/a.log", ".env",
                 "requirements/dev.txt"):
        assert ignored(path, patterns), path
    for path in ("pyproject.toml", "README.md", "requirements/runtime.txt",
                 "requirements/quantize.txt", "evi/cli.py",
                 "gateway/app.py", "processors/app.py", "producers/__main__.py",
                 "web/index.html"):
        assert not ignored(path, patterns), path


def pip_installs(s: Stage) -> list[str]:
    runs = [r for r in s.all("RUN")]
    return [" ".join(words) for r in runs for _, words in image.commands(r)
            if words[:2] == ["pip", "install"]]


def test_dependencies_install_from_the_lock(stages: list[Stage]) -> None:
    """Only hash-checked files from requirements/runtime.txt; the project without resolving."""
    build = stage(stages, "build")
    assert pip_installs(build) == ["pip install --require-hashes -r requirements/runtime.txt",
                                   "pip install --no-deps --no-build-isolation ."]
    copies = [c.words() for c in build.all("COPY")]
    assert ["requirements/runtime.txt", "./requirements/"] in copies
    before = copies[:copies.index(["requirements/runtime.txt", "./requirements/"])]
    assert all(src.startswith("deploy/docker/") for *srcs, _ in before for src in srcs), (
        "the lock layer comes first (after the build's own helpers): a code or pyproject edit "
        "does not reinstall it")
    assert build.base == "builder"
    assert stage(stages, "builder").env()["PATH"].startswith("/opt/venv/bin:")
    quantize = stage(stages, "quantize")
    assert pip_installs(quantize) == ["pip install --require-hashes -r requirements/quantize.txt"]
    assert [c.words() for c in quantize.all("COPY")] == [["requirements/quantize.txt",
                                                         "./requirements/"]]


def test_every_lock_is_hash_checked(stages: list[Stage]) -> None:
    """Every `pip install` of every stage is a lock in --require-hashes mode (each of its lines
    pinned with hashes: test_lock.parse_lock) or the project itself without its dependencies;
    pip refuses an unhashed or unpinned file either way."""
    for s in stages:
        for words in (w for r in s.all("RUN") for _, w in image.commands(r)):
            if "install" not in words or "pip" not in words:
                continue
            locks = [words[i + 1] for i, w in enumerate(words) if w == "-r"]
            if locks:
                assert "--require-hashes" in words, (s.name, words)
                for lock in locks:
                    assert lock.startswith("requirements/") and lock.endswith(".txt"), lock
                    assert parse_lock(Path(lock).name), lock  # pins and hashes, every line
            else:
                assert words[-1] == "." and {"--no-deps", "--no-build-isolation"} <= set(words), (
                    s.name, words)


def test_the_extra_ca_is_a_secret_of_the_runs_that_download(stages: list[Stage]) -> None:
    """pip and `evi models fetch` (pip download) trust the optional CA bundle through a
    BuildKit secret mounted for that RUN only: no COPY, ENV or ARG carries it into a layer."""
    downloads = 0
    for s in stages:
        for run in s.all("RUN"):
            words = [w for _, ws in image.commands(run) for w in ws]
            fetches = ("install" in words and "-r" in words) or words[:3] == ["evi", "models",
                                                                             "fetch"]
            if fetches:
                downloads += 1
                assert run.flags.get("mount") == "type=secret,id=extra_ca", (s.name, run.args)
                assert run.args.startswith("with-extra-ca "), run.args
        for i in s.instructions:
            assert "extra_ca" not in i.args or i.op == "RUN", (s.name, i.op, i.args)
    assert downloads == 4  # the runtime lock, the models, the quantize lock, the gateway lock
    assert "syntax=" not in DOCKERFILE.read_text().split("\n")[0], (
        "the engine's own frontend builds it: no frontend image to pull")


def test_debian_or_python_base_get_the_same_python_path(stages: list[Stage]) -> None:
    """The venv made in `builder` links to /usr/local/bin/python, in `final` too: both stages
    come from the `python` stage, which makes that path on plain Debian."""
    python = stage(stages, "python")
    assert [r.args for r in python.all("RUN")] == ["debian-python runtime"]
    script = (REPO / "deploy" / "docker" / "debian-python").read_text()
    assert "ln -sf python3.11 /usr/local/bin/python" in script
    assert stage(stages, "builder").base == "python" and stages[-1].base == "python"
    assert stage(stages, "build").base == stage(stages, "gateway-build").base == "builder"
