"""Settings shared by every service: one frozen object per process, flags > env > defaults.

Each service subclasses `ServiceSettings` and builds it once in its `__main__` with the flags the
user gave (`load(...)`), then passes it down. Env vars use the `EVI_` prefix and `__` nesting:
`EVI_KAFKA__BOOTSTRAP_SERVERS=host:9092`, `EVI_TOPICS__FRAME_PARTITIONS=24`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from evi.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parent.parent


class KafkaSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    bootstrap_servers: str = "127.0.0.1:9092"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None

    def client_config(self) -> dict[str, Any]:
        """The librdkafka (confluent-kafka) form of these settings."""
        cfg: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol,
        }
        if self.sasl_mechanism:
            cfg["sasl.mechanism"] = self.sasl_mechanism
        if self.sasl_username:
            cfg["sasl.username"] = self.sasl_username
        if self.sasl_password:
            cfg["sasl.password"] = self.sasl_password.get_secret_value()
        if self.ssl_cafile:
            cfg["ssl.ca.location"] = str(self.ssl_cafile)
        return cfg


class TopicSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    prefix: str = Field("evi", pattern=r"^[a-z][a-z0-9_-]*$")
    frame_partitions: int = Field(12, ge=1, le=1024)
    frames_retention_ms: int = Field(3_600_000, ge=60_000)
    frames_retention_bytes: int = Field(1 << 30, ge=1 << 20)  # per partition
    results_retention_ms: int = Field(86_400_000, ge=60_000)
    # Must stay at or below the broker's message.max.bytes (10 MiB in deploy/kafka).
    max_message_bytes: int = Field(4 << 20, ge=64 << 10, le=10 << 20)


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="EVI_", env_nested_delimiter="__", frozen=True, extra="ignore"
    )

    kafka: KafkaSettings = KafkaSettings()
    topics: TopicSettings = TopicSettings()
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    cache_dir: Path = REPO_ROOT / ".cache"

    def printable(self) -> str:
        """Effective values with secrets masked (SecretStr dumps as '**********')."""
        return self.model_dump_json(indent=2)


S = TypeVar("S", bound=ServiceSettings)


def load(cls: type[S], **flags: Any) -> S:
    """Build settings from flags (None = not given) over env over defaults; ConfigError if bad."""
    given = {k: v for k, v in flags.items() if v is not None}
    try:
        return cls(**given)
    except ValidationError as e:
        lines = [
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors()
        ]
        raise ConfigError("; ".join(lines)) from None


def die_on_config_error(e: ConfigError) -> None:
    for part in str(e).split("; "):
        print(f"evi: bad config: {part}", file=sys.stderr)
    raise SystemExit(2)


def override(section: BaseModel, **flags: Any) -> dict[str, Any] | None:
    """A nested section with the given flags over its env/default values (validated by `load`);
    None when no flag was given, so env and defaults stay untouched."""
    given = {k: v for k, v in flags.items() if v is not None}
    return section.model_dump() | given if given else None
