"""Websockets: live results (with their frames) for one stream or several.

Close codes: 4400 bad request (ids), 4401 missing/wrong token. A syntactically valid id that is
not (yet) in the registry is accepted: the stream may be about to start. Each connection has two
halves: a reader that notices the client leaving (and unsubscribes it at once), and a writer
that sends the subscriber's queue; a slow client only fills its own queue.
"""

from __future__ import annotations

import asyncio
import contextlib

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.websockets import WebSocketState

from evi.wire import valid_stream_id
from gateway.deps import websocket_token_ok
from gateway.fanout import Fanout
from gateway.protocol import CLOSE_BAD_REQUEST, CLOSE_UNAUTHORIZED, hello_message
from gateway.subscribers import Subscriber

router = APIRouter()

MAX_IDS = 256


def parse_ids(raw: str | None) -> tuple[list[str] | None, str]:
    """`ids` query value → (ids or None for all, error)."""
    if raw is None or raw == "*":
        return None, ""
    ids = list(dict.fromkeys(i for i in raw.split(",") if i))
    bad = [i for i in ids if not valid_stream_id(i)]
    if bad:
        return None, f"bad stream ids: {','.join(bad)}"[:120]
    if not ids:
        return None, "no stream ids: use ids=a,b or ids=*"
    if len(ids) > MAX_IDS:
        return None, f"too many stream ids ({len(ids)} > {MAX_IDS}): use ids=*"
    return ids, ""


async def serve(ws: WebSocket, ids: list[str] | None, error: str = "") -> None:
    # Accept first: a close before accept is an HTTP 403 that browsers cannot read a reason from.
    await ws.accept()
    if not websocket_token_ok(ws):
        await ws.close(code=CLOSE_UNAUTHORIZED, reason="missing or wrong token")
        return
    if error:
        await ws.close(code=CLOSE_BAD_REQUEST, reason=error)
        return
    f: Fanout = ws.app.state.fanout
    remote = f"{ws.client.host}:{ws.client.port}" if ws.client else ""
    sub = f.subscribers.add(ids, remote)
    try:
        known = [f.registry[i] for i in (ids if ids is not None else sorted(f.registry))
                 if i in f.registry]
        await ws.send_bytes(hello_message(ids, known, f.kafka_ok, sub.id))
        writer = asyncio.create_task(_write(ws, sub))
        reader = asyncio.create_task(_drain(ws))
        await asyncio.wait({writer, reader}, return_when=asyncio.FIRST_COMPLETED)
        for task in (writer, reader):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, RuntimeError):
                await task
    except (WebSocketDisconnect, RuntimeError):
        pass  # the client went away while we sent the hello
    finally:
        f.subscribers.remove(sub)
        if ws.application_state == WebSocketState.CONNECTED:
            with contextlib.suppress(RuntimeError, WebSocketDisconnect):
                await ws.close(code=1001 if sub.closed else 1000)


async def _write(ws: WebSocket, sub: Subscriber) -> None:
    while True:
        message = await sub.next()
        if message is None:  # the gateway is shutting down
            return
        await ws.send_bytes(message)


async def _drain(ws: WebSocket) -> None:
    """Read (and ignore) what the client sends, until it disconnects."""
    while True:
        msg = await ws.receive()
        if msg["type"] == "websocket.disconnect":
            return


@router.websocket("/ws/streams/{stream_id}")
async def one_stream(ws: WebSocket, stream_id: str) -> None:
    ok = valid_stream_id(stream_id)
    await serve(ws, [stream_id], "" if ok else f"bad stream id: {stream_id[:100]}")


@router.websocket("/ws/streams")
async def many_streams(ws: WebSocket) -> None:
    ids, error = parse_ids(ws.query_params.get("ids"))
    await serve(ws, ids, error)
