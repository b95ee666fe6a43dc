"""REST routes: streams, kinds, stats (under /api, behind the token: a bearer header or the
session cookie) and the probes /healthz and /readyz (open, for orchestrators). Prometheus reads
/metrics on its own port (`metrics_port`, gateway/__main__.py), never through the Ingress.

Routes read one `GatewayView` (gateway/views.py) and return its schema objects."""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import JSONResponse

from evi.wire import valid_stream_id
from gateway.deps import UNAUTHORIZED, require_auth, view
from gateway.schemas import GatewayStats, Health, KindView, StreamView
from gateway.views import GatewayView

ViewDep = Annotated[GatewayView, Depends(view)]
Status = Literal["live", "reconnecting", "ended", "error", "unknown"]

router = APIRouter(tags=["probes"])
api = APIRouter(prefix="/api", dependencies=[Depends(require_auth)], tags=["api"])

Responses = dict[int | str, dict[str, Any]]
NOT_FOUND: Responses = {404: {"description": "unknown stream"}, 400: {"description": "bad id"}}
AUTH: Responses = {401: {"description": UNAUTHORIZED}}


@api.get("/streams", response_model=list[StreamView], responses=AUTH)
async def list_streams(
    v: ViewDep,
    status: Annotated[Status | None, Query(description="only streams in this status")] = None,
    kind: Annotated[
        str | None, Query(pattern=r"^[a-z][a-z0-9-]{0,31}$", description="only this kind")
    ] = None,
) -> list[StreamView]:
    """Every stream of the registry, and streams seen on the topics without registering."""
    return [
        s for s in v.streams()
        if (status is None or s.status == status) and (kind is None or kind in s.kinds)
    ]


@api.get("/streams/{stream_id}", response_model=StreamView, responses=NOT_FOUND | AUTH)
async def get_stream(stream_id: str, v: ViewDep) -> StreamView:
    if not valid_stream_id(stream_id):
        raise HTTPException(400, f"stream id {stream_id[:64]!r} is not valid")
    if not v.known(stream_id):
        raise HTTPException(404, f"stream {stream_id!r} is not known")
    return v.stream(stream_id)


@api.get("/kinds", response_model=list[KindView], responses=AUTH)
async def list_kinds(
    v: ViewDep,
    minutes: Annotated[float, Query(gt=0, le=1440, description="history to return")] = 10,
) -> list[KindView]:
    """Inference kinds: topic, partitions, consumer groups with lag and active workers."""
    return v.kinds(int(time.time() * 1000 - minutes * 60_000))


@api.get("/stats", response_model=GatewayStats, responses=AUTH)
async def stats(v: ViewDep) -> GatewayStats:
    return v.stats()


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """The process is alive (it stays alive while Kafka is away)."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
async def readyz(v: ViewDep) -> JSONResponse:
    """Ready while Kafka answers, the consumer has its partitions and its feed makes progress
    (the poll loop turns and the batches it hands over are taken); else 503 with the reason."""
    why = v.not_ready()
    if not why:
        return JSONResponse({"status": "ready"})
    return JSONResponse({"status": why}, status_code=503)
