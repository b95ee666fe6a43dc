"""Settings shared by every service: one frozen object per process, flags > env > defaults.

Each service subclasses `ServiceSettings` and builds it once in its `__main__` with the flags the
user gave (`load(...)`), then passes it down. Env vars use the `EVI_` prefix and `__` nesting:
`EVI_KAFKA__BOOTSTRAP_SERVERS=host:9092`, `EVI_TOPICS__FRAME_PARTITIONS=24`.
"""

from __future__ import annotations

import ipaddress
import json
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from evi.errors import ConfigError
from evi.log import librdkafka_logger
from evi.paths import REPO_ROOT as REPO_ROOT  # re-exported: tests and benches import it here
from evi.paths import default_cache_dir

_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?"
                       r"(\.[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?)*\.?$")


def check_address(entry: str) -> str:
    """`entry` as host:port (hostname, IPv4 or [IPv6]; port 1-65535); ValueError saying what is
    wrong. librdkafka would take a bad entry silently and try 127.0.0.1:9092 or nothing."""
    if "://" in entry:  # librdkafka takes PLAINTEXT://host:port, faust's broker URL does not
        raise ValueError(f"{entry!r}: write host:port (the protocol is kafka.security_protocol)")
    host, sep, port = entry.rpartition(":")
    if not sep or not host:
        raise ValueError(f"{entry!r} is not host:port (e.g. broker:9092)")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"{entry!r}: port {port!r} is not a number 1-65535")
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host.removeprefix("[").removesuffix("]"))
        except ValueError:
            raise ValueError(f"{entry!r}: {host} is not an IPv6 address") from None
        if not host.endswith("]"):
            raise ValueError(f"{entry!r}: an IPv6 host is written [addr]")
    elif ":" in host:
        raise ValueError(f"{entry!r}: write an IPv6 host in brackets, [addr]:port")
    elif not _HOSTNAME.match(host):
        raise ValueError(f"{entry!r}: {host!r} is not a hostname or IPv4 address")
    return f"{host}:{int(port)}"


class KafkaSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    bootstrap_servers: str = "127.0.0.1:9092"  # host:port[,host:port...]
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    # How long a worker that needs the broker to start (evi process) waits for it to answer.
    startup_wait_s: float = Field(60.0, ge=0, le=3600)

    @field_validator("bootstrap_servers")
    @classmethod
    def _addresses(cls, v: str) -> str:
        entries = [e.strip() for e in v.split(",")]
        if not any(entries):
            raise ValueError("empty: give host:port[,host:port...]")
        if not all(entries):
            raise ValueError(f"{v!r} has an empty entry between commas")
        return ",".join(check_address(e) for e in entries)

    def client_config(self) -> dict[str, Any]:
        """The librdkafka (confluent-kafka) form of these settings. Its log goes through Python
        logging (evi.log.librdkafka_logger), so a client must be polled for its lines to show;
        without a logger librdkafka writes every connection retry to stderr."""
        cfg: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol,
            "logger": librdkafka_logger(),
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
    # Copies of every partition of every topic evi creates, and how many of them must have a
    # record before an acks=all write (all producers, processors, in-flight records) succeeds.
    # 1/1 for the one-node dev broker; a 3-node cluster uses 3/2, so one broker may die with no
    # write failing and no acknowledged record lost (docs/kafka.md, "Replication").
    replication_factor: int = Field(1, ge=1, le=32)
    min_insync_replicas: int = Field(1, ge=1, le=32)

    @model_validator(mode="after")
    def _insync_within_replicas(self) -> TopicSettings:
        if self.min_insync_replicas > self.replication_factor:
            raise ValueError(f"min_insync_replicas ({self.min_insync_replicas}) must be at most "
                             f"replication_factor ({self.replication_factor}): every acks=all "
                             f"write would fail")
        return self


@dataclass(frozen=True)
class CommonFlags:
    """The flags every `evi` command takes (evi/command.py); None = not given."""

    bootstrap_servers: str | None = None
    topic_prefix: str | None = None
    log_level: str | None = None
    print_settings: bool = False

    def overrides(self) -> dict[str, Any]:
        """The given flags as nested settings values, the shape EVI_KAFKA__... env vars take."""
        out: dict[str, Any] = {}
        if self.bootstrap_servers is not None:  # '' too: an empty address is an error
            out["kafka"] = {"bootstrap_servers": self.bootstrap_servers}
        if self.topic_prefix is not None:
            out["topics"] = {"prefix": self.topic_prefix}
        if self.log_level is not None:
            out["log_level"] = self.log_level
        return out


# Set by the command layer around one command's run: a context variable, not os.environ, so a
# command run in a test's thread leaves other threads' settings alone.
_COMMON: ContextVar[CommonFlags | None] = ContextVar("evi_common_flags", default=None)


def common_flags() -> CommonFlags:
    return _COMMON.get() or CommonFlags()


@contextmanager
def given_flags(flags: CommonFlags) -> Iterator[None]:
    """Every settings object built inside takes `flags` over its env values."""
    token = _COMMON.set(flags)
    try:
        yield
    finally:
        _COMMON.reset(token)


class CommonFlagsSource(PydanticBaseSettingsSource):
    """The common flags as a settings source between init arguments and env: nested values merge
    field by field with EVI_KAFKA__*, EVI_TOPICS__* as env values do with each other."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ gives the whole mapping

    def __call__(self) -> dict[str, Any]:
        return common_flags().overrides()


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="EVI_", env_nested_delimiter="__", frozen=True, extra="ignore"
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, CommonFlagsSource(settings_cls), env_settings, dotenv_settings,
                file_secret_settings)

    kafka: KafkaSettings = KafkaSettings()
    topics: TopicSettings = TopicSettings()
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # `.cache` in a checkout, the user's cache dir for an installed evi (evi/paths.py).
    cache_dir: Path = Field(default_factory=default_cache_dir)

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
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg'].removeprefix('Value error, ')}"
            for err in e.errors()
        ]
        raise ConfigError("; ".join(lines)) from None
    except SettingsError as e:  # an env value of a list/object field that is not JSON
        raise ConfigError(_env_problem(cls, e)) from None


_FIELD = re.compile(r'field "([^"]+)"')


def _env_problem(cls: type[ServiceSettings], e: SettingsError) -> str:
    """One line naming the env var: pydantic-settings says 'error parsing value for field
    "topics" from source "EnvSettingsSource"' and keeps the JSON error as the cause."""
    m = _FIELD.search(str(e))
    prefix = str(cls.model_config.get("env_prefix", ""))
    var = f"{prefix}{m.group(1)}".upper() if m else "an EVI_ variable"
    cause = e.__cause__
    if isinstance(cause, json.JSONDecodeError):
        return f"{var}: not valid JSON ({cause.msg} at character {cause.pos + 1})"
    return f"{var}: {cause or e}".replace("; ", ", ")


def die_on_config_error(e: ConfigError) -> None:
    for part in str(e).split("; "):
        print(f"evi: bad config: {part}", file=sys.stderr)
    raise SystemExit(2)


def override(section: BaseModel, **flags: Any) -> dict[str, Any] | None:
    """A nested section with the given flags over its env/default values (validated by `load`);
    None when no flag was given, so env and defaults stay untouched."""
    given = {k: v for k, v in flags.items() if v is not None}
    return section.model_dump() | given if given else None
