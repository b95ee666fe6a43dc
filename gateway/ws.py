"""Websockets: live results (with their frames) for one stream or several.

Close codes: 4400 bad request (ids), 4401 missing/wrong token. A syntactically valid id that is
not (yet) in the registry is accepted: the stream may be about to start.
"""

from __future__ import annotations

import asyncio
import contextlib

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from evi.wire import valid_stream_id
from gateway.deps import websocket_token_ok
from gateway.fanout import Fanout, pack_message

router = APIRouter()


async def serve(ws: WebSocket, ids: list[str] | None) -> None:
    # Accept first: a close before accept is an HTTP 403 that browsers cannot read a reason from.
    await ws.accept()
    if not websocket_token_ok(ws):
        await ws.close(code=4401, reason="missing or wrong token")
        return
    bad = [i for i in ids or [] if not valid_stream_id(i)]
    if ids is not None and (bad or not ids):
        await ws.close(code=4400, reason=f"bad stream ids: {','.join(bad)[:100] or '(none)'}")
        return
    f: Fanout = ws.app.state.fanout
    sub = f.subscribe(ids)
    hello = {"type": "hello", "streams": ids, "known": [i for i in ids or [] if i in f.registry]}
    await ws.send_bytes(pack_message(hello, b""))
    # A reader notices the client going away at once, even while no results flow.
    reader = asyncio.create_task(_drain(ws))
    try:
        while not reader.done():
            nxt = asyncio.create_task(sub.next())
            done, _ = await asyncio.wait({nxt, reader}, return_when=asyncio.FIRST_COMPLETED)
            if nxt not in done:
                nxt.cancel()
                break
            await ws.send_bytes(nxt.result())
    except (WebSocketDisconnect, RuntimeError):
        pass  # client went away mid-send
    finally:
        f.unsubscribe(sub)
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader


async def _drain(ws: WebSocket) -> None:
    """Read (and ignore) what the client sends, until it disconnects."""
    while True:
        msg = await ws.receive()
        if msg["type"] == "websocket.disconnect":
            return


@router.websocket("/ws/streams/{stream_id}")
async def one_stream(ws: WebSocket, stream_id: str) -> None:
    await serve(ws, [stream_id])


@router.websocket("/ws/streams")
async def many_streams(ws: WebSocket) -> None:
    raw = ws.query_params.get("ids")
    ids = None if raw is None or raw == "*" else [i for i in raw.split(",") if i]
    await serve(ws, ids)
