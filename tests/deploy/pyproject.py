"""pyproject.toml's requirements as pip and uv read them, for linux x86_64 CPython 3.11."""

from __future__ import annotations

import tomllib
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.deploy.support import REPO

# linux x86_64, CPython 3.11: the environment markers the lock is resolved for.
MARKER_ENV = {"python_version": "3.11", "python_full_version": "3.11.0", "sys_platform": "linux",
              "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
              "implementation_name": "cpython", "platform_python_implementation": "CPython"}


def pyproject() -> Any:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def direct(requirements: list[str]) -> list[Requirement]:
    reqs = [Requirement(r) for r in requirements]
    return [r for r in reqs if r.marker is None or r.marker.evaluate(MARKER_ENV)]


def wanted(*extras: str) -> list[Requirement]:
    """The core's requirements and those of `extras`, an extra's `evi[a,b]` expanded to a's and
    b's (as pip and uv read it)."""
    project = pyproject()["project"]
    out = direct(project["dependencies"])
    todo, seen = list(extras), set()
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for req in direct(project["optional-dependencies"][extra]):
            if canonicalize_name(req.name) == "evi":
                todo.extend(req.extras)
            else:
                out.append(req)
    return out


def names(reqs: list[Requirement]) -> set[str]:
    return {str(canonicalize_name(r.name)) for r in reqs}
