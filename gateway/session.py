"""The dashboard's session: the token (once, from the link `make dev` prints) for an HttpOnly,
SameSite=Strict cookie, so the page never keeps the token and websockets need none in their URL.
The API docs are gateway/apidocs.py."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response

from gateway.auth import COOKIE, Auth, served_over_https
from gateway.deps import UNAUTHORIZED, auth, bearer, session
from gateway.schemas import Session

router = APIRouter(prefix="/api", tags=["session"],
                   dependencies=[Depends(bearer), Depends(session)])
AuthDep = Annotated[Auth, Depends(auth)]
FORBIDDEN = "this page's origin may not use the gateway (allowed_origins)"
Responses = dict[int | str, dict[str, Any]]
REFUSED: Responses = {401: {"description": UNAUTHORIZED}, 403: {"description": FORBIDDEN}}


def _https(request: Request) -> bool:
    return served_over_https(request.url.scheme, request.headers)


def _check_origin(request: Request, a: Auth) -> None:
    if not a.origin_ok(request.headers.get("origin"), request.headers.get("host"),
                       _https(request)):
        raise HTTPException(403, FORBIDDEN)


@router.post("/session", response_model=Session, responses=REFUSED)
async def open_session(request: Request, response: Response, a: AuthDep) -> Session:
    """Exchange the token (`Authorization: Bearer …`), or a session cookie still good, for a
    fresh session cookie (`evi_session`, HttpOnly, SameSite=Strict, Secure over https)."""
    _check_origin(request, a)
    response.headers["Cache-Control"] = "no-store"
    if not a.required:
        return Session(auth=False)
    if not a.allows(request.headers, request.cookies):
        raise HTTPException(401, UNAUTHORIZED, {"WWW-Authenticate": "Bearer"})
    value, expiry = a.new_session()
    response.set_cookie(COOKIE, value, max_age=a.ttl_s, path="/", secure=_https(request),
                        httponly=True, samesite="strict")
    return Session(auth=True, expires_ms=expiry * 1000)


@router.delete("/session", status_code=204, responses=REFUSED)
async def close_session(request: Request, a: AuthDep) -> Response:
    """Forget this browser's session cookie (other sessions last until the token changes)."""
    _check_origin(request, a)
    response = Response(status_code=204)
    response.delete_cookie(COOKIE, path="/", secure=_https(request), httponly=True,
                           samesite="strict")
    return response
