"""REST routes: streams, kinds, stats (under /api, token-protected when a token is set) and the
probes /healthz, /readyz and /metrics (always open, for orchestrators and Prometheus)."""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from evi.wire import valid_stream_id
from gateway.deps import fanout, require_token
from gateway.fanout import Fanout
from gateway.schemas import GatewayStats, Health, KindView, StreamView

FanoutDep = Annotated[Fanout, Depends(fanout)]
Status = Literal["live", "reconnecting", "ended", "error", "unknown"]

router = APIRouter(tags=["probes"])
api = APIRouter(prefix="/api", dependencies=[Depends(require_token)], tags=["api"])

Responses = dict[int | str, dict[str, Any]]
NOT_FOUND: Responses = {404: {"description": "unknown stream"}, 400: {"description": "bad id"}}
AUTH: Responses = {401: {"description": "missing or wrong bearer token"}}


def stream_view(f: Fanout, stream: str) -> dict[str, Any]:
    info = f.registry.get(stream)
    st = f.stats.get(stream)
    if info is not None:
        out: dict[str, Any] = asdict(info) | {"registered": True}
        out.pop("schema", None)
    else:
        kinds = sorted({m.kind for m in st.models.values()}) if st else []
        out = {
            "stream": stream, "registered": False, "source": "", "kinds": kinds, "fps": 0.0,
            "width": 0, "height": 0, "status": "unknown", "message": "", "producer": "",
            "updated_ms": 0,
        }
    drops = f.subscribers.dropped_by_stream.get(stream, 0)
    out["stats"] = st.snapshot(drops) if st else None
    return out


@api.get("/streams", response_model=list[StreamView], responses=AUTH)
async def list_streams(
    f: FanoutDep,
    status: Annotated[Status | None, Query(description="only streams in this status")] = None,
    kind: Annotated[
        str | None, Query(pattern=r"^[a-z][a-z0-9-]{0,31}$", description="only this kind")
    ] = None,
) -> list[dict[str, Any]]:
    """Every stream of the registry, and streams seen on the topics without registering."""
    views = [stream_view(f, s) for s in sorted(set(f.registry) | set(f.stats))]
    return [
        v for v in views
        if (status is None or v["status"] == status) and (kind is None or kind in v["kinds"])
    ]


@api.get("/streams/{stream_id}", response_model=StreamView, responses=NOT_FOUND | AUTH)
async def get_stream(stream_id: str, f: FanoutDep) -> dict[str, Any]:
    if not valid_stream_id(stream_id):
        raise HTTPException(400, f"stream id {stream_id[:64]!r} is not valid")
    if stream_id not in f.registry and stream_id not in f.stats:
        raise HTTPException(404, f"stream {stream_id!r} is not known")
    return stream_view(f, stream_id)


@api.get("/kinds", response_model=list[KindView], responses=AUTH)
async def list_kinds(
    f: FanoutDep,
    minutes: Annotated[float, Query(gt=0, le=1440, description="history to return")] = 10,
) -> list[dict[str, Any]]:
    """Inference kinds: topic, partitions, consumer groups with lag and active workers."""
    m = f.monitor
    since = int(time.time() * 1000 - minutes * 60_000)
    out = []
    for kind in f.kinds():
        v = m.views.get(kind, {})
        out.append({
            "kind": kind, "topic": f.topics.frames(kind), "results_topic": f.topics.results(kind),
            "partitions": v.get("partitions", m.partitions.get(f.topics.frames(kind), 0)),
            "group": f.topics.group(kind), "groups": v.get("groups", []),
            "lag": v.get("lag"), "workers": v.get("workers"),
            "fps_in": v.get("fps_in", 0.0), "fps_out": v.get("fps_out", 0.0),
            "sampled_ms": v.get("sampled_ms", 0), "stale": v.get("stale", True),
            "history": [h for h in m.history.get(kind, ()) if h["t_ms"] >= since],
        })
    return out


@api.get("/stats", response_model=GatewayStats, responses=AUTH)
async def stats(f: FanoutDep) -> dict[str, Any]:
    subs = f.subscribers
    return {
        "ready": f.ready, "kafka": f.kafka_ok, "kafka_error": f.monitor.error,
        "kafka_checked_ms": f.monitor.checked_ms, "uptime_s": round(time.time() - f.started, 1),
        "kinds": f.kinds(), "topics": dict(f.feed.partitions),
        "streams": len(set(f.registry) | set(f.stats)), "records_read": f.feed.records,
        "clients": len(subs), "dropped_to_clients": subs.dropped_total,
        "client_list": [s.view() for s in subs.all.values()],
    }


@router.get("/healthz", response_model=Health)
async def healthz() -> dict[str, str]:
    """The process is alive (it stays alive while Kafka is away)."""
    return {"status": "ok"}


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
async def readyz(f: FanoutDep) -> JSONResponse:
    """Ready only while Kafka answers and the consumer has its partitions."""
    if f.ready:
        return JSONResponse({"status": "ready"})
    why = "waiting for kafka" if not f.kafka_ok else "assigning partitions"
    return JSONResponse({"status": why}, status_code=503)


@router.get("/metrics", response_class=Response)
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
