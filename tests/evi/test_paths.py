"""evi/paths.py in a checkout: the repo's web/, deploy/kafka/ and .cache (the Makefile and the
tests rely on them); the settings default to them. The installed package's side runs in
tests/deploy/test_wheel_install.py."""

from __future__ import annotations

from pathlib import Path

from evi import paths
from evi.settings import ServiceSettings
from gateway.settings import GatewaySettings

REPO = Path(__file__).resolve().parents[2]


def test_a_checkout_finds_its_own_files() -> None:
    assert paths.checkout() == REPO
    assert paths.web_dir() == REPO / "web" and (paths.web_dir() / "index.html").is_file()
    assert paths.kafka_script() == REPO / "deploy" / "kafka" / "kafka.sh"
    assert paths.default_cache_dir() == REPO / ".cache"


def test_settings_default_to_the_checkouts_cache_and_web(monkeypatch) -> None:
    for var in ("EVI_CACHE_DIR", "EVI_WEB_DIR"):
        monkeypatch.delenv(var, raising=False)
    assert ServiceSettings().cache_dir == REPO / ".cache"
    assert GatewaySettings(auth_required=False).web_dir == REPO / "web"


def test_evi_cache_dir_overrides_the_default(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EVI_CACHE_DIR", str(tmp_path))
    assert ServiceSettings().cache_dir == tmp_path
