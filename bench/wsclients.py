"""Websocket clients for bench/gateway.py, in a process of their own (several run at once), so
the clients' CPU is not the gateway bench's bottleneck nor shares an event loop with it.

    python bench/wsclients.py viewers ws://127.0.0.1:8000/ws/streams/bench 50 30
    python bench/wsclients.py idle ws://127.0.0.1:8000/ws/streams/idle 2500 0

`viewers URL N FIRST_SEQ`: N clients of URL; each counts the results with their JPEG of sequence
FIRST_SEQ or later and their latency (receive time - the result's `processed_ms`, clocks of the
same machine). `idle URL N START`: N clients of URL-START … URL-(START+N-1), each its own stream
nobody publishes, that only keep their connection open.

The parent talks over stdin/stdout, one line each: the worker prints `ready <connected>` once all
its clients are connected (or `--connect-s` ran out); then reads `end <last_seq>` (viewers: wait,
at most `--drain-s`, until every client got last_seq) or `end`, closes its clients and prints
one JSON line (`connected`, `delivered`, `latencies_ms`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import struct
import sys
import time
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

HEADER_LEN = struct.Struct(">I")  # gateway/protocol.py: u32 header length, JSON header, JPEG


class Tally:
    def __init__(self, n: int, first_seq: int) -> None:
        self.first_seq = first_seq
        self.latencies: list[float] = []
        self.last_seq = [-1] * n
        self.connected = 0


async def view(i: int, ws: ClientConnection, tally: Tally) -> None:
    """Count this client's results until its connection is closed."""
    first = tally.first_seq
    try:
        async for raw in ws:
            now_ms = time.time() * 1000
            if not isinstance(raw, bytes):
                continue
            (n,) = HEADER_LEN.unpack_from(raw)
            header: dict[str, Any] = json.loads(raw[4 : 4 + n])
            if header.get("type") == "result" and len(raw) > 4 + n and header["seq"] >= first:
                tally.latencies.append(now_ms - header["processed_ms"])
                tally.last_seq[i] = header["seq"]
    except Exception:  # a connection lost mid-row shows as missing messages
        return


async def open_all(urls: list[str], deadline: float) -> list[ClientConnection | None]:
    """Connect every URL, at most 64 handshakes at a time, until the deadline."""
    gate = asyncio.Semaphore(64)

    async def one(url: str) -> ClientConnection | None:
        async with gate:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                ws = await connect(url, max_size=8 << 20, ping_interval=None, compression=None,
                                   open_timeout=min(left, 30.0))
                await asyncio.wait_for(ws.recv(), min(max(left, 1.0), 30.0))  # the hello
            except Exception:  # counted as not connected
                return None
            return ws

    return list(await asyncio.gather(*(one(u) for u in urls)))


async def line() -> str:
    text: str = await asyncio.to_thread(sys.stdin.readline)
    return text.strip()


async def main_async(a: argparse.Namespace) -> dict[str, Any]:
    idle = [f"{a.url}-{a.start + i}" for i in range(a.n)] if a.mode == "idle" else []
    urls = idle or [a.url] * a.n
    conns = await open_all(urls, time.monotonic() + a.connect_s)
    tally = Tally(a.n, a.start if a.mode == "viewers" else 0)
    tally.connected = sum(c is not None for c in conns)
    tasks = [asyncio.create_task(view(i, c, tally)) for i, c in enumerate(conns) if c is not None]
    print(f"ready {tally.connected}", flush=True)
    cmd = (await line()).split()
    if a.mode == "viewers" and len(cmd) == 2:
        last = int(cmd[1])
        up = [i for i, c in enumerate(conns) if c is not None]
        end = time.monotonic() + a.drain_s
        # polling n counters every 20 ms costs less than n events set per message
        while time.monotonic() < end and any(tally.last_seq[i] < last for i in up):  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    for c in conns:
        if c is not None:
            c.transport.abort()  # no closing handshake: 10,000 of them would be the next row's load
    await asyncio.wait_for(asyncio.gather(*tasks), 10)
    return {"connected": tally.connected, "delivered": len(tally.latencies),
            "latencies_ms": [round(x, 2) for x in tally.latencies]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["viewers", "idle"])
    ap.add_argument("url")
    ap.add_argument("n", type=int)
    ap.add_argument("start", type=int, help="viewers: first seq counted; idle: first stream no.")
    ap.add_argument("--connect-s", type=float, default=60.0)
    ap.add_argument("--drain-s", type=float, default=5.0)
    a = ap.parse_args()
    print(json.dumps(asyncio.run(main_async(a))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
