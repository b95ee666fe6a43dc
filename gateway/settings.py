"""Settings of one gateway process."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import Field, SecretStr, ValidationInfo, field_validator

from evi.paths import web_dir
from evi.settings import ServiceSettings
from evi.topics import check_kind


class GatewaySettings(ServiceSettings):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    # Kinds to serve; empty = every kind whose topics exist, found again on each metadata refresh.
    kinds: list[str] = Field(default_factory=list)
    # The dashboard: the checkout's web/ or the installed package's copy (evi/paths.py).
    web_dir: Path = Field(default_factory=web_dir)
    # Recent frames kept per stream to pair with their results (results trail frames by ~ms).
    frame_cache: int = Field(64, ge=1, le=4096)
    # How long a result waits for its frame before it is sent without a picture.
    pair_wait_ms: int = Field(1000, ge=0, le=30_000)
    # A frame is sent alone (a picture without boxes) when the newest frame sent with a result
    # is more than this older than it: results lag behind or none come, so a tile still shows
    # the newest picture (gateway/pictures.py); 0 = never.
    frames_alone_after_ms: int = Field(1000, ge=0, le=600_000)
    # At most this many frames a second per stream go alone (a tile's need, not the stream's).
    frames_alone_fps: float = Field(5.0, gt=0, le=1000)
    # Messages queued per websocket client; a slow client loses its oldest, never blocks others.
    client_queue: int = Field(32, ge=1, le=10_000)
    # How often the consumer looks for new topics and partitions (new kinds, more partitions).
    metadata_refresh_s: float = Field(5.0, ge=0.5, le=300)
    # Kafka health probe period (drives /readyz) and the kinds panel sample period.
    probe_interval_s: float = Field(2.0, ge=0.2, le=60)
    kinds_interval_s: float = Field(5.0, ge=0.5, le=300)
    # The autoscaler's lag per worker (KEDA lagThreshold: deploy/k8s/keda's 700; `evi dev` passes
    # its --lag-threshold): the panel's desired-replicas line is KEDA's formula on it.
    lag_threshold: int = Field(700, ge=1)
    max_replicas: int = Field(12, ge=1)  # maxReplicaCount, the line's ceiling (with partitions)
    # How much per-kind history (lag, workers, fps) the API keeps for the dashboard's charts.
    history_s: int = Field(600, ge=10, le=86_400)
    # Bounds on state keyed by names from the data (a producer or a forged record picks them).
    # Streams tracked (stats, duplicate windows, frame caches); past it the least recently seen
    # stream is let go, so a flood of new ids can never push out the streams that are active.
    max_streams: int = Field(1000, ge=1, le=100_000)
    # A stream with no frame or result for this long is let go (its numbers restart if it returns).
    stream_idle_s: float = Field(300.0, ge=1, le=86_400)
    # Registry entries kept (the compacted topic is read from its start); past it, the entry
    # updated longest ago is let go.
    max_registry: int = Field(10_000, ge=1, le=1_000_000)
    # Distinct models tracked per stream and counted per kind; results of further models are
    # refused (per stream) and counted under the model label `other` (per kind).
    max_models: int = Field(16, ge=1, le=1000)
    # Results remembered per stream and model to recognise a replay: (seq, ts_ms) of the last N.
    dedup_window: int = Field(2048, ge=16, le=1_000_000)
    # /readyz fails when the feed has records to hand over but the loop has not taken a batch
    # for this long, or when the Kafka poll loop has not ticked for this long.
    feed_stall_s: float = Field(30.0, ge=1, le=3600)
    # Websocket clients send nothing the gateway needs: a bigger message closes with 1009, more
    # than `ws_client_rate` messages per second (bursts of twice that) closes with 1008.
    ws_client_max_bytes: int = Field(4096, ge=16, le=1 << 20)
    ws_client_rate: float = Field(10.0, gt=0, le=10_000)
    # Auth (docs/gateway.md, "Auth"). Closed by default: without a token the gateway does not
    # start unless opened on purpose (`--no-auth`, EVI_AUTH_REQUIRED=false).
    auth_required: bool = True
    auth_token: SecretStr | None = Field(None, validate_default=True)
    # How long a dashboard session cookie (POST /api/session) is good for; the page renews it.
    session_ttl_s: int = Field(7 * 86_400, ge=60, le=90 * 86_400)
    # Browser origins allowed to open websockets and sessions besides the gateway's own
    # (scheme://host[:port]); a request without an Origin header (not a browser) is not checked.
    allowed_origins: list[str] = Field(default_factory=list)
    cors_origins: list[str] = Field(default_factory=list)
    # Websocket connections at once, in all and per client address; past either: close 1013.
    max_connections: int = Field(10_000, ge=1, le=1_000_000)
    max_connections_per_client: int = Field(64, ge=1, le=1_000_000)
    # Prometheus /metrics on its own port, bound to `host` (not behind the Ingress); 0 = off.
    metrics_port: int = Field(9103, ge=0, le=65535)
    # Proxies whose X-Forwarded-For/-Proto uvicorn believes (the client address the per-client
    # cap counts, the scheme); "*" only when nothing but the proxy can reach the gateway.
    forwarded_allow_ips: list[str] = Field(default_factory=lambda: ["127.0.0.1"])

    @field_validator("kinds")
    @classmethod
    def _valid_kinds(cls, kinds: list[str]) -> list[str]:
        return [check_kind(k) for k in kinds]

    @field_validator("auth_token")
    @classmethod
    def _token(cls, token: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        required = info.data.get("auth_required", True)
        if token is None or not token.get_secret_value():
            if required:
                raise ValueError(
                    f"the gateway needs a token: set EVI_AUTH_TOKEN ({MIN_TOKEN_CHARS}+ "
                    "characters, e.g. `openssl rand -hex 32`), or open it on purpose with "
                    "--no-auth (EVI_AUTH_REQUIRED=false)")
            return None
        if not required:
            raise ValueError("a token is set and auth is off (--no-auth, "
                             "EVI_AUTH_REQUIRED=false): unset one of them")
        value = token.get_secret_value()
        if (len(value) < MIN_TOKEN_CHARS or value != value.strip() or not value.isascii()
                or not value.isprintable()):
            raise ValueError(f"the token must be at least {MIN_TOKEN_CHARS} printable ASCII "
                             f"characters without surrounding spaces")
        return token

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, origins: list[str]) -> list[str]:
        return [check_origin(o) for o in origins]


MIN_TOKEN_CHARS = 16
_ORIGIN = re.compile(r"^https?://(\[[0-9a-f:.]+\]|[a-z0-9._-]+)(:[0-9]{1,5})?$")


def check_origin(origin: str) -> str:
    """A browser origin as the Origin header writes it: scheme://host[:port], lower case."""
    o = origin.strip().lower().rstrip("/")
    if o == "*" or not _ORIGIN.match(o):
        raise ValueError(f"{origin!r} is not an origin: write scheme://host[:port] (no path, no *)")
    return o
