"""Response bodies of the REST API (they are also its OpenAPI schema at /docs)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class Drops(BaseModel):
    frames: int = Field(description="frame sequence numbers never seen (lost before the gateway)")
    results: int = Field(description="frames a model did not answer (skipped as stale, or lost)")
    clients: int = Field(description="messages slow websocket clients lost (oldest first)")
    duplicates: int = Field(description="replayed results dropped (at-least-once delivery)")


class ModelView(BaseModel):
    model: str
    kind: str
    results_seen: int
    fps_out: float
    last_seq: int
    latency_p50_ms: float
    skipped: int = Field(description="frames this model did not answer: gaps in its seqs")
    skipped_per_s: float = Field(
        description="skipped a second over the last 10 s: > 0 while drop-stale drops frames")
    duplicates: int


class StreamStatsView(BaseModel):
    fps_in: float = Field(description="frames per second over the last 10 s")
    fps_out: float = Field(description="results per second over the last 10 s, all models")
    latency_p50_ms: float = Field(description="capture → result at the gateway, median")
    latency_p95_ms: float
    latency_p99_ms: float
    infer_p50_ms: float
    frames_seen: int
    results_seen: int
    last_seq: int
    last_seen_ms: int = Field(description="wall clock of the last frame or result, Unix ms")
    drops: Drops
    models: list[ModelView]


class StreamView(BaseModel):
    stream: str
    registered: bool = Field(description="false for a stream seen on the topics only")
    source: str
    kinds: list[str]
    fps: float = Field(description="the producer's target frame rate (0 = unknown)")
    width: int
    height: int
    status: str = Field(description="live | reconnecting | ended | error | unknown")
    message: str
    producer: str
    updated_ms: int
    stats: StreamStatsView | None


class Member(BaseModel):
    client_id: str
    host: str
    partitions: int


class GroupView(BaseModel):
    group: str
    state: str
    members: list[Member]
    lag: int
    lag_by_partition: dict[str, int]


class KindSample(BaseModel):
    t_ms: int
    lag: int | None
    workers: int | None
    desired: int | None = None
    fps_in: float
    fps_out: float


class KindView(BaseModel):
    kind: str
    topic: str
    results_topic: str
    partitions: int
    group: str
    groups: list[GroupView]
    lag: int | None = Field(description="frames not processed yet, summed over the kind's groups")
    workers: int | None = Field(description="members of the kind's consumer groups")
    desired: int | None = Field(None, description="replicas KEDA's Kafka scaler would ask for "
                                "(lag_threshold per worker) for the kind's own group")
    lag_threshold: int = Field(description="the lag per worker KEDA's Kafka trigger aims at "
                               "(its lagThreshold; the gateway's lag_threshold)")
    max_replicas: int = Field(description="the ceiling of `desired` (KEDA's maxReplicaCount)")
    fps_in: float = Field(description="frames per second into the kind's topic")
    fps_out: float = Field(description="results per second per model (mean over the models)")
    sampled_ms: int
    stale: bool = Field(description="true when the last sample could not reach Kafka")
    history: list[KindSample]


class ClientView(BaseModel):
    id: str
    remote: str
    streams: list[str] | None
    queued: int
    sent: int
    dropped: int
    connected_s: float


class GatewayStats(BaseModel):
    ready: bool
    kafka: bool
    kafka_error: str
    kafka_checked_ms: int
    uptime_s: float
    kinds: list[str]
    topics: dict[str, int] = Field(description="topics read and their partitions")
    streams: int
    records_read: int
    clients: int
    dropped_to_clients: int = Field(description="since start, also by clients now gone")
    client_list: list[ClientView] = Field(description="the first 256 clients to connect")


class Health(BaseModel):
    status: str


class Session(BaseModel):
    auth: bool = Field(description="false when the gateway runs open (--no-auth): no cookie")
    expires_ms: int | None = Field(None, description="when the session cookie stops working")
