"""Which optional dependencies (pyproject.toml's extras) each `evi` command needs.

The core install runs `evi gateway`, `evi lag`, `evi kafka`; the processors need
`evi[processor]` (faust, OpenVINO, ...), the producers `evi[producer]` (OpenCV, scikit-image's
sample picture, ...). A command whose extra is missing stops with one line naming the pip command
instead of a traceback from deep inside an import. tests/deploy/test_wheel_install.py checks that
these module lists match the extras' distributions.
"""

from __future__ import annotations

import sys
from importlib.util import find_spec

# extra -> the top-level modules its packages provide (found without importing them)
EXTRAS: dict[str, tuple[str, ...]] = {
    "processor": ("faust", "aiokafka", "openvino", "cv2", "simplejpeg", "numpy", "yaml"),
    "producer": ("cv2", "simplejpeg", "numpy", "skimage", "yaml"),
}

# command -> the extras it needs; a command not listed needs the core only
NEEDS: dict[str, tuple[str, ...]] = {
    "process": ("processor",),
    "models": ("processor",),
    "produce": ("producer",),
    "sample": ("producer",),
    "record": ("producer",),
    "replay": ("producer",),
    "dev": ("processor", "producer"),  # its children run both
}


def missing_modules(extra: str) -> list[str]:
    return [m for m in EXTRAS[extra] if not installed(m)]


def installed(module: str) -> bool:
    # An imported module is installed; and find_spec raises on faust once imported: faust
    # swaps its module in sys.modules for a lazy one without __spec__.
    return module in sys.modules or find_spec(module) is not None


def install_hint(extras: tuple[str, ...]) -> str:
    return f"pip install 'evi[{','.join(extras)}]'"


def problem(command: str) -> str | None:
    """The line saying what `command` lacks, or None when its extras are installed."""
    needs = NEEDS.get(command, ())
    absent = [m for extra in needs for m in missing_modules(extra)]
    if not absent:
        return None
    names = ", ".join(dict.fromkeys(absent))
    return f"evi {command}: needs {install_hint(needs)} (not installed: {names})"


def require(command: str) -> None:
    """Exit 1 with one line when `command`'s extras are not installed."""
    if line := problem(command):
        print(line, file=sys.stderr)
        raise SystemExit(1)
