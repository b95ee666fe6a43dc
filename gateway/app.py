"""The gateway app: REST, websockets and the dashboard, over one Kafka fan-out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles
from starlette.middleware.trustedhost import TrustedHostMiddleware

from gateway import api, apidocs, session, ws
from gateway.auth import Auth, is_loopback
from gateway.fanout import Fanout
from gateway.limits import ConnectionLimits
from gateway.settings import GatewaySettings

DESCRIPTION = """Live streams, their detections and the processors' scaling state.

Everything here but `/healthz` and `/readyz` needs the token: `Authorization: Bearer <token>`,
or the `evi_session` cookie that `POST /api/session` gives for it (what the dashboard uses).

Websockets (not listed below): `/ws/streams/{id}` and `/ws/streams?ids=a,b` (or `ids=*`) send
binary messages — a JSON header and the frame's JPEG; see docs/wire-format.md. They take the
same bearer header or cookie (never a token in the URL).
"""
# An open gateway on loopback answers only to loopback names: a page whose own name resolves
# to 127.0.0.1 (DNS rebinding) would otherwise be same-origin with it.
LOOPBACK_NAMES = ["localhost", "127.0.0.1", "::1", "*.localhost"]


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

    # The docs are served by gateway/apidocs.py, behind the token, with no CDN.
    # 400 may come from before any route: a Host a loopback-only gateway does not answer to
    # (TrustedHostMiddleware) or a request the HTTP parser refuses; every operation says so.
    app = FastAPI(title="evi gateway", version="0.1.0", description=DESCRIPTION,
                  lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None,
                  responses={400: {"description": "malformed request, or a Host this gateway "
                                                  "does not answer to"}})
    app.state.settings = s
    app.state.auth = Auth(s)
    app.state.limits = ConnectionLimits(s.max_connections, s.max_connections_per_client)
    if s.cors_origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=s.cors_origins, allow_methods=["GET"],
            allow_headers=["Authorization"],
        )
    if not s.auth_required and is_loopback(s.host):
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=LOOPBACK_NAMES)
    app.include_router(api.router)
    app.include_router(api.api)
    app.include_router(session.router)
    app.include_router(apidocs.docs)
    app.include_router(ws.router)
    if s.web_dir.is_dir():
        app.mount("/", StaticFiles(directory=s.web_dir, html=True), name="web")
    return app
