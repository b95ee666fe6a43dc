"""Websockets: live results (with their frames) for one stream or several.

A syntactically valid id that is not (yet) in the registry is accepted: the stream may be about
to start. Each connection has two halves: a reader that notices the client leaving (and
unsubscribes it at once), and a writer that sends the subscriber's queue; a slow client only
fills its own queue. Clients have nothing to say to the gateway, so the reader also polices
them: a message over `ws_client_max_bytes` closes with 1009, more than `ws_client_rate`
messages a second (bursts of twice that) with 1008. Close codes: gateway/protocol.py and
docs/gateway.md.

Who may connect is decided before anything else, at the handshake: a missing or wrong token
(bearer header or session cookie; never `?token=`, which proxies log) is answered HTTP 401 and
a page of another origin HTTP 403, without accepting: no subscription, no message, nothing for
a cross-site page to read. Past the connection caps the socket is accepted only to close with
1013 (try again later), which a browser can read and a plain HTTP error would not say.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from fastapi.responses import PlainTextResponse
from prometheus_client import Counter
from starlette.websockets import WebSocketState

from evi.wire import valid_stream_id
from gateway.auth import Auth, served_over_https
from gateway.deps import UNAUTHORIZED
from gateway.fanout import Fanout
from gateway.limits import ConnectionLimits
from gateway.protocol import (
    CLOSE_BAD_REQUEST,
    CLOSE_FORBIDDEN_ORIGIN,
    CLOSE_GOING_AWAY,
    CLOSE_NORMAL,
    CLOSE_POLICY,
    CLOSE_TOO_BIG,
    CLOSE_TRY_AGAIN,
    CLOSE_UNAUTHORIZED,
    hello_message,
)
from gateway.settings import GatewaySettings
from gateway.subscribers import Subscriber

log = logging.getLogger("evi.gateway.ws")
router = APIRouter()

WS_CLOSED = Counter(
    "evi_gateway_ws_closed_total", "Websocket connections the gateway closed, by code (not 1000)",
    ["code"],
)
MAX_IDS = 256
MAX_IDS_CHARS = MAX_IDS * 129  # 256 ids of 128 characters and their commas
GONE = (WebSocketDisconnect, RuntimeError, OSError)  # the client went away mid-send or -read


def close_reason(text: str) -> str:
    """A close reason: printable ASCII (ids are echoed escaped), at most 120 bytes (the
    protocol allows 123)."""
    return text.encode("ascii", "backslashreplace")[:120].decode("ascii", "ignore")


def parse_ids(raw: str | None) -> tuple[list[str] | None, str]:
    """`ids` query value → (ids or None for all, error)."""
    if raw is None or raw == "*":
        return None, ""
    if len(raw) > MAX_IDS_CHARS:
        return None, f"ids too long ({len(raw)} characters): use ids=*"
    ids = list(dict.fromkeys(i for i in raw.split(",") if i))
    if len(ids) > MAX_IDS:
        return None, f"too many stream ids ({len(ids)} > {MAX_IDS}): use ids=*"
    bad = [i for i in ids if not valid_stream_id(i) or i != i.strip()]
    if bad:
        return None, close_reason(f"bad stream ids: {','.join(b[:40] for b in bad[:3])}")
    if not ids:
        return None, "no stream ids: use ids=a,b or ids=*"
    return ids, ""


async def _close(ws: WebSocket, code: int, reason: str = "") -> None:
    if code != CLOSE_NORMAL:
        WS_CLOSED.labels(str(code)).inc()
    if ws.application_state == WebSocketState.CONNECTED:
        with contextlib.suppress(*GONE):
            await ws.close(code=code, reason=close_reason(reason))


def refusal(ws: WebSocket) -> tuple[int, int, str] | None:
    """(code counted, HTTP status, reason) when this handshake must be refused, else None."""
    a: Auth = ws.app.state.auth
    https = served_over_https(ws.url.scheme, ws.headers)
    if not a.origin_ok(ws.headers.get("origin"), ws.headers.get("host"), https):
        return CLOSE_FORBIDDEN_ORIGIN, 403, "this page's origin may not connect (allowed_origins)"
    if not a.allows(ws.headers, ws.cookies):
        return CLOSE_UNAUTHORIZED, 401, UNAUTHORIZED
    return None


async def _refuse(ws: WebSocket, code: int, status: int, reason: str) -> None:
    WS_CLOSED.labels(str(code)).inc()
    try:
        await ws.send_denial_response(PlainTextResponse(reason, status))
    except RuntimeError:  # a server without the denial extension: a bare HTTP 403
        with contextlib.suppress(*GONE):
            await ws.close(code)


async def serve(ws: WebSocket, ids: list[str] | None, error: str = "") -> None:
    refused = refusal(ws)
    if refused is not None:
        await _refuse(ws, *refused)
        return
    limits: ConnectionLimits = ws.app.state.limits
    client = ws.client.host if ws.client else ""
    full = limits.enter(client)
    try:
        await ws.accept()
        if full:
            await _close(ws, CLOSE_TRY_AGAIN, full)
        elif error:
            await _close(ws, CLOSE_BAD_REQUEST, error)
        else:
            await _serve(ws, ids)
    finally:
        if not full:
            limits.leave(client)


async def _serve(ws: WebSocket, ids: list[str] | None) -> None:
    f: Fanout = ws.app.state.fanout
    s: GatewaySettings = ws.app.state.settings
    remote = f"{ws.client.host}:{ws.client.port}" if ws.client else ""
    sub = f.subscribers.add(ids, remote)
    code, reason = CLOSE_NORMAL, ""
    try:
        known = [info for i in (ids if ids is not None else sorted(f.registry))
                 if (info := f.registry.get(i)) is not None]
        await ws.send_bytes(hello_message(ids, known, f.monitor.kafka_ok, sub.id))
        writer = asyncio.create_task(_write(ws, sub))
        reader = asyncio.create_task(_read(ws, s.ws_client_max_bytes, s.ws_client_rate))
        await asyncio.wait({writer, reader}, return_when=asyncio.FIRST_COMPLETED)
        for task in (writer, reader):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, *GONE):
                await task
        if reader.done() and not reader.cancelled() and reader.exception() is None:
            code, reason = reader.result()
    except GONE:
        pass  # the client went away while we sent the hello
    finally:
        f.subscribers.remove(sub)
        if sub.closed and code == CLOSE_NORMAL:
            code = CLOSE_GOING_AWAY
        if ws.application_state == WebSocketState.CONNECTED:
            await _close(ws, code, reason)


async def _write(ws: WebSocket, sub: Subscriber) -> None:
    while True:
        message = await sub.next()
        if message is None:  # the gateway is shutting down
            return
        await ws.send_bytes(message)


async def _read(ws: WebSocket, max_bytes: int, rate: float) -> tuple[int, str]:
    """Read what the client sends (text or binary, nothing is used) until it disconnects, or
    until it breaks the bounds: then the close code and reason."""
    burst = 2 * rate
    tokens, at = burst, time.monotonic()
    while True:
        msg = await ws.receive()
        if msg["type"] == "websocket.disconnect":
            return CLOSE_NORMAL, ""
        data = msg.get("bytes") or msg.get("text") or ""
        size = len(data) if isinstance(data, bytes) else len(data.encode("utf-8", "replace"))
        if size > max_bytes:
            return CLOSE_TOO_BIG, f"client messages are at most {max_bytes} bytes"
        now = time.monotonic()
        tokens = min(burst, tokens + (now - at) * rate) - 1
        at = now
        if tokens < 0:
            return CLOSE_POLICY, f"client messages are at most {rate:g}/s"


@router.websocket("/ws/streams/{stream_id}")
async def one_stream(ws: WebSocket, stream_id: str) -> None:
    ok = valid_stream_id(stream_id) and stream_id == stream_id.strip()
    await serve(ws, [stream_id], "" if ok else f"bad stream id: {stream_id[:40]}")


@router.websocket("/ws/streams")
async def many_streams(ws: WebSocket) -> None:
    ids, error = parse_ids(ws.query_params.get("ids"))
    await serve(ws, ids, error)
