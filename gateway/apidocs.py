"""The API docs (/docs, /redoc, /openapi.json) behind the same auth as /api, with Swagger UI's
and ReDoc's scripts served from the `fastapi-offline` package: no CDN, so the docs work on a
network that reaches nothing but the gateway.

Why behind auth: the docs describe an API nobody may use without the token, and the page
needs /openapi.json, which lists every route; the dashboard's session cookie opens them in a
browser as it opens /api. The assets are the same files for everyone, but behind auth too, so
"everything but the probes needs the token" stays true without exceptions to remember.
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse

from gateway.deps import require_auth

# fastapi-offline ships the assets as package data beside its module (1.7.x: static/); its
# public API builds a whole app, not routes, so the directory is read here and nowhere else
# (tests/gateway/test_apidocs.py fails when the package moves or drops a file).
ASSET_DIR = Path(fastapi_offline.__file__).parent / "static"
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "redoc.standalone.js": "text/javascript",
    "favicon.png": "image/png",
}
PREFIX = "/docs/assets"
TITLE = "evi gateway — API"
# The pages may load nothing from past the gateway, whatever a bundle has hard-coded (ReDoc's
# side menu shows a logo from its vendor's CDN): the browser refuses such a load, never sends it.
CSP = "; ".join((
    "default-src 'self'",
    "script-src 'self' 'unsafe-inline'",  # the pages' inline start-up script
    "style-src 'self' 'unsafe-inline'",  # both UIs set styles inline
    "img-src 'self' data:",
    "font-src 'self' data:",
    "worker-src 'self' blob:",  # ReDoc's search index
    "connect-src 'self'",
    "frame-ancestors 'none'",
))


def _page(html: HTMLResponse) -> HTMLResponse:
    html.headers["Content-Security-Policy"] = CSP
    return html

docs = APIRouter(dependencies=[Depends(require_auth)], include_in_schema=False)


@docs.get("/openapi.json")
async def openapi(request: Request) -> JSONResponse:
    return JSONResponse(request.app.openapi())


@docs.get("/docs")
async def swagger() -> HTMLResponse:
    # validatorUrl None: Swagger UI would otherwise send the spec to an online validator.
    return _page(get_swagger_ui_html(
        openapi_url="/openapi.json", title=TITLE,
        swagger_js_url=f"{PREFIX}/swagger-ui-bundle.js",
        swagger_css_url=f"{PREFIX}/swagger-ui.css",
        swagger_favicon_url=f"{PREFIX}/favicon.png",
        swagger_ui_parameters={"validatorUrl": None},
    ))


@docs.get("/redoc")
async def redoc() -> HTMLResponse:
    return _page(get_redoc_html(
        openapi_url="/openapi.json", title=TITLE,
        redoc_js_url=f"{PREFIX}/redoc.standalone.js",
        redoc_favicon_url=f"{PREFIX}/favicon.png",
        with_google_fonts=False,
    ))


@docs.get(PREFIX + "/{name}")
async def asset(name: str) -> FileResponse:
    """Only the named files: the name never becomes a path of its own."""
    media = ASSETS.get(name)
    if media is None:
        raise HTTPException(404, "no such asset")
    return FileResponse(ASSET_DIR / name, media_type=media,
                        headers={"Cache-Control": "private, max-age=86400"})
