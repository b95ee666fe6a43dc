"""Settings of one processor worker (one kind, one model, one consumer group)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from evi.settings import ServiceSettings


class ProcessorSettings(ServiceSettings):
    kind: str = "face"
    # Name of the model entry to serve; None = the kind's default model.
    model: str | None = None
    models_file: Path | None = None
    # faust's web server: /metrics and /healthz. 0 picks a free port (several workers per host).
    web_port: int = Field(9102, ge=0, le=65535)
    web_bind: str = "0.0.0.0"
    # Micro-batch taken from the stream: all frames of a batch are in flight at once, so decode of
    # frame N+1 overlaps inference of frame N; results are produced in order, then acked.
    batch_max: int = Field(16, ge=1, le=512)
    batch_within_ms: int = Field(5, ge=1, le=1000)
    decode_threads: int = Field(2, ge=1, le=64)
    # faust defaults that are wrong for video (see docs/processors.md for the reasons):
    commit_interval_s: float = Field(0.5, gt=0, le=30)  # default 2.8 s reads as phantom lag
    session_timeout_s: float = Field(10.0, ge=6, le=300)  # default 60 s idles dead partitions
    heartbeat_interval_s: float = Field(2.0, gt=0, le=30)
    max_poll_interval_s: float = Field(60.0, ge=10, le=3600)
    prefetch: int = Field(32, ge=1, le=4096)  # stream_buffer_maxsize, default 4096 (~800 MB)
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    policy: Literal["process-all", "drop-stale"] = "process-all"
    max_age_ms: int = Field(2000, ge=1)
