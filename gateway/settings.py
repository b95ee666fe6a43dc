"""Settings of one gateway process."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr

from evi.settings import REPO_ROOT, ServiceSettings


class GatewaySettings(ServiceSettings):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    kinds: list[str] = Field(default_factory=lambda: ["face"])
    web_dir: Path = REPO_ROOT / "web"
    # Recent frames kept per stream to pair with their results (results trail frames by ~ms).
    frame_cache: int = Field(64, ge=1, le=4096)
    # How long a result waits for its frame before it is sent without a picture.
    pair_wait_ms: int = Field(1000, ge=0, le=30_000)
    # Messages queued per websocket client; a slow client loses its oldest, never blocks others.
    client_queue: int = Field(32, ge=1, le=10_000)
    auth_token: SecretStr | None = None
    cors_origins: list[str] = Field(default_factory=list)
