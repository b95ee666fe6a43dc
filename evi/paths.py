"""Where evi's files are, in a source checkout or in an installed package.

A checkout keeps the dashboard in `web/`, the broker's script and pom in `deploy/kafka/` and its
cache in `.cache/` (the Makefile and the tests rely on it). A wheel carries `web/` and
`deploy/kafka/` as package data under `evi/_data/` (pyproject.toml maps them there), and an
installed evi caches in the user's cache directory: never under site-packages, which may be
read-only and is replaced on every upgrade.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent  # the checkout's root when evi runs from one (editable or not)
DATA_DIR = PACKAGE_DIR / "_data"  # the wheel's copies of web/ and deploy/kafka/


def checkout() -> Path | None:
    """The source checkout evi runs from, or None for an installed package."""
    if (REPO_ROOT / "pyproject.toml").is_file() and (REPO_ROOT / "deploy" / "kafka").is_dir():
        return REPO_ROOT
    return None


def web_dir() -> Path:
    """The dashboard's assets (index.html, style.css, src/)."""
    root = checkout()
    return root / "web" if root else DATA_DIR / "web"


def kafka_dir() -> Path:
    """kafka.sh and what it reads: pom.xml, the properties, log4j2 files, AclBatch.java."""
    root = checkout()
    return root / "deploy" / "kafka" if root else DATA_DIR / "kafka"


def kafka_script() -> Path:
    return kafka_dir() / "kafka.sh"


def default_cache_dir() -> Path:
    """Models, Kafka jars and data, OpenVINO's compiled blobs, the dev gateway's token: `.cache`
    in a checkout, else the platform's user cache dir (~/.cache/evi on Linux, honouring
    XDG_CACHE_HOME). EVI_CACHE_DIR overrides both (the image sets /opt/evi/cache)."""
    root = checkout()
    if root:
        return root / ".cache"
    from platformdirs import user_cache_path  # only an installed evi needs it

    return user_cache_path("evi", appauthor=False)
