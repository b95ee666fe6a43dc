"""REST routes: streams, kinds, stats, health."""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from evi.kafka import group_lag
from evi.wire import valid_stream_id
from gateway.deps import fanout, require_token, settings
from gateway.fanout import Fanout
from gateway.settings import GatewaySettings

FanoutDep = Annotated[Fanout, Depends(fanout)]
SettingsDep = Annotated[GatewaySettings, Depends(settings)]

router = APIRouter()
api = APIRouter(prefix="/api", dependencies=[Depends(require_token)])


def stream_view(f: Fanout, stream: str) -> dict[str, Any]:
    info = f.registry.get(stream)
    out: dict[str, Any] = asdict(info) if info else {"stream": stream, "status": "unknown"}
    st = f.stats.get(stream)
    out["stats"] = st.snapshot() if st else None
    return out


@api.get("/streams")
async def list_streams(f: FanoutDep) -> list[dict[str, Any]]:
    return [stream_view(f, s) for s in sorted(f.registry)]


@api.get("/streams/{stream_id}")
async def get_stream(stream_id: str, f: FanoutDep) -> dict[str, Any]:
    if not valid_stream_id(stream_id):
        raise HTTPException(400, f"stream id {stream_id[:64]!r} is not valid")
    if stream_id not in f.registry:
        raise HTTPException(404, f"stream {stream_id!r} is not known")
    return stream_view(f, stream_id)


@api.get("/kinds")
async def list_kinds(f: FanoutDep, s: SettingsDep) -> list[dict[str, Any]]:
    out = []
    for kind in s.kinds:
        topic, group = f.topics.frames(kind), f.topics.group(kind)
        try:
            parts = await asyncio.to_thread(group_lag, s.kafka, group, topic, 5.0)
            lag: dict[str, Any] = {
                "total": sum(p.lag for p in parts),
                "partitions": {str(p.partition): p.lag for p in parts},
            }
        except Exception as e:  # any Kafka failure is reported in the body, not as a 500
            lag = {"error": str(e)}
        out.append({
            "kind": kind, "topic": topic, "results_topic": f.topics.results(kind),
            "group": group, "partitions": len(lag.get("partitions", {})), "lag": lag,
        })
    return out


@api.get("/stats")
async def stats(f: FanoutDep) -> dict[str, Any]:
    return {
        "streams": len(f.registry),
        "clients": len(f.subscribers),
        "kafka": f.kafka_ok,
        "dropped_to_clients": sum(sub.dropped for sub in f.subscribers),
    }


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(f: FanoutDep) -> Response:
    ok = f.ready.is_set() and f.kafka_ok
    return Response(
        '{"status":"ready"}' if ok else '{"status":"waiting for kafka"}',
        status_code=200 if ok else 503, media_type="application/json",
    )


@router.get("/metrics")
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
