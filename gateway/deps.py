"""Shared request dependencies: the app's fan-out and settings, and the optional bearer token."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request, WebSocket
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from gateway.fanout import Fanout
from gateway.settings import GatewaySettings
from gateway.views import GatewayView

bearer = HTTPBearer(auto_error=False, description="the gateway's EVI_AUTH_TOKEN, when it has one")


def fanout(request: Request) -> Fanout:
    f: Fanout = request.app.state.fanout
    return f


def view(request: Request) -> GatewayView:
    """The read-only view the REST routes answer from."""
    return GatewayView(request.app.state.fanout)


def settings(request: Request) -> GatewaySettings:
    s: GatewaySettings = request.app.state.settings
    return s


def _token_ok(expected: str, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(expected.encode(), given.encode())


def require_token(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    token = request.app.state.settings.auth_token
    if token is None:
        return
    given = credentials.credentials if credentials is not None else None
    if not _token_ok(token.get_secret_value(), given):
        raise HTTPException(401, "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"})


def websocket_token_ok(ws: WebSocket) -> bool:
    """Browsers cannot set headers on a websocket: `?token=` is accepted there too."""
    token = ws.app.state.settings.auth_token
    if token is None:
        return True
    header = ws.headers.get("authorization", "")
    given = header[7:] if header.lower().startswith("bearer ") else ws.query_params.get("token")
    return _token_ok(token.get_secret_value(), given)
