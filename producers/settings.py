"""Settings of `evi produce`: Kafka and topics from evi.settings, plus streams and tuning.

Env examples: `EVI_METRICS_PORT=9101`, `EVI_PUBLISHER__LINGER_MS=10`,
`EVI_STREAMS='[{"source": "sample:", "kinds": ["face"]}]'`.
"""

from __future__ import annotations

import os
import socket
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from evi.errors import ConfigError
from evi.settings import ServiceSettings
from evi.topics import check_kind
from evi.wire import valid_stream_id


def default_producer_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class StreamConfig(BaseModel):
    """One stream: a source and where its frames go."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = ""  # empty: derived from the source name
    source: str = Field(min_length=1)
    kinds: list[str] = Field(default_factory=lambda: ["face"], min_length=1)
    fps: float | None = Field(None, ge=0, le=1000)  # None: native; 0: as fast as possible
    loop: bool = False
    count: int | None = Field(None, ge=1)  # stop after this many frames
    width: int | None = Field(None, ge=16, le=8192)
    height: int | None = Field(None, ge=16, le=8192)
    quality: int = Field(80, ge=1, le=100)
    start: float = Field(0.0, ge=0)  # seconds into a video file
    duration: float | None = Field(None, gt=0)  # seconds of a video file

    @field_validator("kinds")
    @classmethod
    def _kinds(cls, v: list[str]) -> list[str]:
        try:
            return list(dict.fromkeys(check_kind(k) for k in v))
        except ConfigError as e:
            raise ValueError(str(e)) from None

    @model_validator(mode="after")
    def _id(self) -> StreamConfig:
        if not self.id:
            from producers.sources import default_stream_id

            object.__setattr__(self, "id", default_stream_id(self.source))
        if not valid_stream_id(self.id):
            raise ValueError(
                f"stream id {self.id!r} is not valid: use letters, digits, '.', '_' and '-'"
            )
        return self


class PublisherSettings(BaseModel):
    """librdkafka tuning for 30-200 KB frames, and the bounds that keep memory flat."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # 0: a live frame leaves at once. A backlog still batches: records produced while requests
    # are in flight share the next one (docs/benchmarks.md, "Latency").
    linger_ms: int = Field(0, ge=0, le=1000)
    batch_size: int = Field(1_000_000, ge=16 << 10)
    queue_frames: int = Field(4, ge=1, le=1000)  # per stream, in front of librdkafka
    max_inflight_bytes: int = Field(64 << 20, ge=1 << 20)  # handed to librdkafka, unacked
    message_timeout_ms: int = Field(30_000, ge=1000)  # a frame older than this is dropped
    block_timeout_s: float = Field(30.0, gt=0)  # WAIT streams: longest wait for queue room
    flush_timeout_s: float = Field(10.0, ge=0)
    encoder: Literal["cv2", "simplejpeg", "turbojpeg"] = "simplejpeg"

    @field_validator("encoder")
    @classmethod
    def _encoder(cls, v: str) -> str:
        from producers.encode import unavailable

        problem = unavailable(v)
        if problem:
            raise ValueError(problem)
        return v


class ReconnectSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    base_s: float = Field(0.5, gt=0)
    cap_s: float = Field(30.0, gt=0)
    max_attempts: int = Field(0, ge=0)  # 0: forever
    open_timeout_s: float = Field(5.0, gt=0)


class ProducerSettings(ServiceSettings):
    streams: list[StreamConfig] = Field(default_factory=list)
    publisher: PublisherSettings = PublisherSettings()
    reconnect: ReconnectSettings = ReconnectSettings()
    metrics_port: int = Field(0, ge=0, le=65535)
    producer_id: str = Field(default_factory=default_producer_id)

    @field_validator("streams")
    @classmethod
    def _unique(cls, v: list[StreamConfig]) -> list[StreamConfig]:
        seen: set[str] = set()
        for s in v:
            if s.id in seen:
                raise ValueError(f"stream id {s.id!r} is used twice: give each --stream its own id")
            seen.add(s.id)
        return v

    def kinds(self) -> list[str]:
        return list(dict.fromkeys(k for s in self.streams for k in s.kinds))

    def client_config(self) -> dict[str, Any]:
        return self.kafka.client_config()
