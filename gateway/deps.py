"""Shared request dependencies: the app's fan-out, settings and auth, and the auth check."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer

from gateway.auth import COOKIE, Auth
from gateway.fanout import Fanout
from gateway.settings import GatewaySettings
from gateway.views import GatewayView

# Declared for OpenAPI (and Swagger UI's Authorize button); the check itself is Auth.allows.
bearer = HTTPBearer(auto_error=False, description="the gateway's token (EVI_AUTH_TOKEN)")
session = APIKeyCookie(name=COOKIE, auto_error=False,
                       description="the dashboard's session, from POST /api/session")
UNAUTHORIZED = "missing or wrong token (a bearer token, or the session cookie)"


def fanout(request: Request) -> Fanout:
    f: Fanout = request.app.state.fanout
    return f


def view(request: Request) -> GatewayView:
    """The read-only view the REST routes answer from."""
    return GatewayView(request.app.state.fanout)


def settings(request: Request) -> GatewaySettings:
    s: GatewaySettings = request.app.state.settings
    return s


def auth(request: Request) -> Auth:
    a: Auth = request.app.state.auth
    return a


def require_auth(
    request: Request,
    _bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    _session: Annotated[str | None, Depends(session)],
) -> None:
    if not auth(request).allows(request.headers, request.cookies):
        raise HTTPException(401, UNAUTHORIZED, {"WWW-Authenticate": "Bearer"})
