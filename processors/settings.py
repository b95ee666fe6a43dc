"""Settings of one processor worker (one kind, one model, one consumer group).

The faust settings that decide correctness are fields here, each with its reason; docs/processors.md
has the upstream evidence for every default we change.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator

from evi.settings import ServiceSettings
from processors.jpeg_header import DecodeBudget

CONCURRENCY_WHY = (
    "agent concurrency must be 1: with more actors faust commits past an event still in flight "
    "(faust-streaming#606, an off-by-one gap check, docs/processors.md) and a crash then loses "
    "frames. Scale with partitions and workers instead (a worker already overlaps the frames of "
    "its micro-batch)"
)


def parse_cpus(spec: str) -> frozenset[int]:
    """`0,2-3` → {0, 2, 3}, the list form `taskset -c` takes."""
    cpus: set[int] = set()
    for part in spec.replace(" ", "").split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        first, last = int(lo), int(hi or lo)
        if first < 0 or last < first:
            raise ValueError(f"bad CPU range {part!r}")
        cpus.update(range(first, last + 1))
    if not cpus:
        raise ValueError("empty CPU list")
    return frozenset(cpus)


class ProcessorSettings(ServiceSettings):
    kind: str = "face"
    # Name of the model entry to serve; None = the kind's default model. A model other than the
    # kind's default runs in its own group (evi-processor-<kind>-<model>), side by side.
    model: str | None = None
    models_file: Path | None = None
    # Consumer group (= faust app id) override, e.g. for a replay; None = derived from kind/model.
    group_id: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")
    # Start a NEW group at the offsets of this time (offsets_for_times on first assignment).
    start_from: datetime | None = None
    # faust's web server: /metrics, /healthz, /readyz. 0 picks a free port (several workers/host).
    web_port: int = Field(9102, ge=0, le=65535)
    web_bind: str = "0.0.0.0"
    # Micro-batch taken from the stream: all frames of a batch are in flight at once, so decode of
    # frame N+1 overlaps inference of frame N; results are produced in order, then acked.
    batch_max: int = Field(32, ge=1, le=512)
    # 0: a batch is handed over as soon as a batch slot is free (processors/take.py): no wait at
    # live rates, full batches under a backlog. > 0: faust's take_events timer, this many ms.
    batch_within_ms: int = Field(0, ge=0, le=1000)
    # Batches in the pipeline at once: 2 lets the next batch start while the last one finishes.
    batches_in_flight: int = Field(2, ge=1, le=8)
    decode_threads: int = Field(2, ge=1, le=64)
    # Frames one inference request takes under a backlog (a second compile of the model with
    # this batch; 1 turns it off). At live rates batches are a frame or two and run one by one.
    infer_batch: int = Field(4, ge=1, le=64)
    # The event loop runs faust, the pipeline's callbacks and postprocess: its speed is the
    # worker's (bench/processor.py). uvloop when importable (uvicorn[standard] brings it).
    event_loop: Literal["uvloop", "asyncio"] = "uvloop"
    # CPU affinity (`taskset -c` list) and OpenVINO INFERENCE_NUM_THREADS (0 = the model's).
    cpus: str | None = None
    threads: int = Field(0, ge=0, le=1024)
    # Largest frame accepted; bigger ones are dead-lettered as too-large. 0 = topics' limit.
    max_frame_bytes: int = Field(0, ge=0)
    # Decode budget, checked on each JPEG's own header before decoding (processors/jpeg_header.py;
    # measurements in docs/reliability.md): over it, a dead letter with reason `decode-budget`.
    max_pixels: int = Field(4096 * 4096, ge=1)
    max_progressive_pixels: int = Field(2048 * 2048, ge=1)  # progressive costs ~3x and buffers all
    max_scans: int = Field(32, ge=1, le=10_000)  # a progressive file passes over it per scan
    # Time budget of a batch's frames (decode, inference, postprocess; not the results' delivery):
    # past it the worker exits, and the frames are run alone by the next owner (watchdog.py).
    frame_budget_s: float = Field(10.0, gt=0, le=3600)
    # A frame running alone when this many workers died is quarantined (processors/quarantine.py).
    # 0 turns quarantine off (no in-flight records): a frame that kills workers then kills all.
    quarantine_deaths: int = Field(1, ge=0, le=100)
    # Frames in a row whose inference or postprocess raised: past this it is not about the frames
    # (the model or device is broken), so the worker exits and the batch is replayed.
    max_consecutive_errors: int = Field(32, ge=1, le=100_000)
    # faust settings that decide correctness (docs/processors.md has the upstream evidence):
    concurrency: int = 1
    commit_interval_s: float = Field(0.5, gt=0, le=30)  # default 2.8 s reads as phantom lag
    session_timeout_s: float = Field(10.0, ge=6, le=300)  # default 60 s idles dead partitions
    heartbeat_interval_s: float = Field(2.0, gt=0, le=30)
    max_poll_interval_s: float = Field(60.0, ge=10, le=3600)  # default 1000 s
    # stream_buffer_maxsize (faust: 4096 frames). Not tens: when it fills, faust stops fetching
    # every partition and its fetch loop sleeps a full second (docs/processors.md), so it must
    # hold more than a second of the worker's rate: 512 ≈ 20–60 MB of JPEG.
    prefetch: int = Field(512, ge=16, le=4096)
    # librdkafka's linger for results and dead letters. 0: a result leaves as soon as its frame is
    # done (a 20 ms linger was most of capture→browser at live rates). A batch's results are
    # handed over in one loop step, so under a backlog they still share requests: librdkafka
    # collects what arrives while a request is in flight (docs/benchmarks.md, "Latency").
    linger_ms: float = Field(0.0, ge=0, le=1000)
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"  # = KEDA offsetResetPolicy
    # Real-time policy: process-all, or drop-stale (older than max_age_ms, fair across streams).
    policy: Literal["process-all", "drop-stale"] = "process-all"
    max_age_ms: int = Field(2000, ge=1)
    # drop-stale while behind: at most one stale frame per stream per this much capture time
    # (always the stream's newest in the batch), so a backlog drains and no stream starves.
    stale_keep_ms: int = Field(1000, ge=0)
    # Liveness: unhealthy when lag > 0 and no commit progress for this long (> one batch's time).
    stall_timeout_s: float = Field(30.0, ge=1, le=3600)
    lag_interval_s: float = Field(1.0, gt=0, le=60)  # how often lag/seconds-behind are measured
    # SIGTERM: stop fetching, finish the in-flight batch, commit, leave; a 2nd signal forces.
    drain_timeout_s: float = Field(20.0, gt=0, le=600)
    # How long the worker waits for a broker that went away before it gives up: a result, dead
    # letter or in-flight record not on the broker within this is fatal (exit 70, the batch is
    # replayed). librdkafka's message.timeout.ms of both producers (processors/sink.py); the
    # consumer side (aiokafka: fetch, heartbeat, commit) retries without a bound meanwhile.
    broker_outage_s: float = Field(300.0, ge=10, le=86_400)

    @field_validator("concurrency")
    @classmethod
    def _one_actor(cls, v: int) -> int:
        if v != 1:
            raise ValueError(CONCURRENCY_WHY)
        return v

    @field_validator("cpus")
    @classmethod
    def _cpu_list(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                parse_cpus(v)
            except ValueError as e:
                raise ValueError(f"{e} (want a list like 0,2-3)") from None
        return v

    @field_validator("start_from")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        """A time without a zone is UTC, as Kafka timestamps are."""
        return v.replace(tzinfo=UTC) if v is not None and v.tzinfo is None else v

    @field_validator("start_from")
    @classmethod
    def _replay_needs_group(cls, v: datetime | None, info: ValidationInfo) -> datetime | None:
        if v is not None and not info.data.get("group_id"):
            raise ValueError("--from starts a new consumer group, name it with --group-id")
        return v

    @field_validator("heartbeat_interval_s")
    @classmethod
    def _heartbeats_per_session(cls, v: float, info: ValidationInfo) -> float:
        session = info.data.get("session_timeout_s")
        if session is not None and v * 3 > session:
            raise ValueError(f"at most a third of session_timeout_s ({session})")
        return v

    @property
    def cpu_set(self) -> frozenset[int] | None:
        return parse_cpus(self.cpus) if self.cpus else None

    @property
    def decode_budget(self) -> DecodeBudget:
        return DecodeBudget(self.max_pixels, self.max_progressive_pixels, self.max_scans)

    @property
    def frame_limit(self) -> int:
        return self.max_frame_bytes or self.topics.max_message_bytes
