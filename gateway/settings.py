"""Settings of one gateway process."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator

from evi.settings import REPO_ROOT, ServiceSettings
from evi.topics import check_kind


class GatewaySettings(ServiceSettings):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    # Kinds to serve; empty = every kind whose topics exist, found again on each metadata refresh.
    kinds: list[str] = Field(default_factory=list)
    web_dir: Path = REPO_ROOT / "web"
    # Recent frames kept per stream to pair with their results (results trail frames by ~ms).
    frame_cache: int = Field(64, ge=1, le=4096)
    # How long a result waits for its frame before it is sent without a picture.
    pair_wait_ms: int = Field(1000, ge=0, le=30_000)
    # A stream with no result for this long has its frames sent alone (video without boxes),
    # so a stream whose processors are down still shows; 0 = never.
    frames_alone_after_ms: int = Field(3000, ge=0, le=600_000)
    # Messages queued per websocket client; a slow client loses its oldest, never blocks others.
    client_queue: int = Field(32, ge=1, le=10_000)
    # How often the consumer looks for new topics and partitions (new kinds, more partitions).
    metadata_refresh_s: float = Field(5.0, ge=0.5, le=300)
    # Kafka health probe period (drives /readyz) and the kinds panel sample period.
    probe_interval_s: float = Field(2.0, ge=0.2, le=60)
    kinds_interval_s: float = Field(5.0, ge=0.5, le=300)
    # How much per-kind history (lag, workers, fps) the API keeps for the dashboard's charts.
    history_s: int = Field(600, ge=10, le=86_400)
    auth_token: SecretStr | None = None
    cors_origins: list[str] = Field(default_factory=list)

    @field_validator("kinds")
    @classmethod
    def _valid_kinds(cls, kinds: list[str]) -> list[str]:
        return [check_kind(k) for k in kinds]
