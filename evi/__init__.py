"""evi: elastic video inference on Kafka. This package is the thin shared core."""

from __future__ import annotations


def installed_version() -> str:
    """The version pip installed (pyproject.toml's, read from the package metadata); "0+unknown"
    for a checkout that was never installed (`make` installs it editable)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("evi")
    except PackageNotFoundError:
        return "0+unknown"


def __getattr__(name: str) -> str:
    # Looked up on first use only: reading the metadata scans sys.path, which `evi --help` and
    # every service start would otherwise pay for.
    if name == "__version__":
        return installed_version()
    raise AttributeError(f"module 'evi' has no attribute {name!r}")
