"""`evi dev`'s gateway token: made once (0600), kept, EVI_AUTH_TOKEN first; the printed link."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from evi.dev import dashboard_link, gateway_token
from evi.errors import ConfigError


def test_token_is_made_once_private_and_kept(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EVI_AUTH_TOKEN", raising=False)
    cache = tmp_path / "cache"
    first = gateway_token(cache)
    path = cache / "gateway-token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first) == 43 and path.read_text() == first + "\n"  # token_urlsafe(32)
    assert gateway_token(cache) == first
    assert gateway_token(tmp_path / "other") != first


def test_a_readable_token_file_is_made_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("EVI_AUTH_TOKEN", raising=False)
    path = tmp_path / "gateway-token"
    path.write_text("a-token-of-twenty-chars\n")
    path.chmod(0o644)
    assert gateway_token(tmp_path) == "a-token-of-twenty-chars"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "was readable by others: now 0600" in capsys.readouterr().out


def test_env_token_wins_and_a_bad_file_is_one_error(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVI_AUTH_TOKEN", "from-the-environment-123")
    assert gateway_token(tmp_path) == "from-the-environment-123"
    assert not (tmp_path / "gateway-token").exists()
    monkeypatch.delenv("EVI_AUTH_TOKEN")
    (tmp_path / "gateway-token").write_text("\n")
    (tmp_path / "gateway-token").chmod(0o600)
    with pytest.raises(ConfigError, match=r"not a token .* delete it and a new one is made"):
        gateway_token(tmp_path)


def test_link_carries_the_token_in_the_fragment() -> None:
    assert dashboard_link(8000, "abc") == "http://127.0.0.1:8000/#token=abc"
