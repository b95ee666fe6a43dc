"""Fixtures for tests/deploy: the rendered overlays and the compose file. All offline: no Docker
engine, no cluster, no broker; except test_wheel_install.py (the wheel in a fresh venv: the dev
broker, and pip downloads the first time)."""

from __future__ import annotations

import pytest
import yaml

from tests.deploy.kustomize import build
from tests.deploy.support import K8S, OVERLAYS, REPO, Obj


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[Obj]]:
    """overlay name -> the objects `kubectl kustomize deploy/k8s/overlays/<name>` prints."""
    return {name: build(K8S / "overlays" / name) for name in OVERLAYS}


@pytest.fixture(scope="session")
def compose() -> Obj:
    doc: Obj = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return doc
