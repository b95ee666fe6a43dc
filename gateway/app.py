"""The gateway app: REST, websockets and the dashboard, over one Kafka fan-out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles

from gateway import api, ws
from gateway.fanout import Fanout
from gateway.settings import GatewaySettings

DESCRIPTION = """Live streams, their detections and the processors' scaling state.

Websockets (not listed below): `/ws/streams/{id}` and `/ws/streams?ids=a,b` (or `ids=*`) send
binary messages — a JSON header and the frame's JPEG; see docs/wire-format.md.
"""


def create_app(s: GatewaySettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        fanout = Fanout(s)
        app.state.fanout = fanout
        await fanout.start()
        try:
            yield
        finally:
            await fanout.stop()

    app = FastAPI(title="evi gateway", version="0.1.0", description=DESCRIPTION,
                  lifespan=lifespan)
    app.state.settings = s
    if s.cors_origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=s.cors_origins, allow_methods=["GET"],
            allow_headers=["Authorization"],
        )
    app.include_router(api.router)
    app.include_router(api.api)
    app.include_router(ws.router)
    if s.web_dir.is_dir():
        app.mount("/", StaticFiles(directory=s.web_dir, html=True), name="web")
    return app
