"""Websocket subscribers: one bounded queue each, so a slow client only ever loses its own
oldest messages (counted) and never blocks the consumer or the other clients."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from collections.abc import Iterable

from prometheus_client import Counter, Gauge

WS_QUEUED = Counter("evi_gateway_ws_messages_total", "Messages queued to websocket clients")
WS_DROPPED = Counter(
    "evi_gateway_ws_dropped_total", "Messages a slow websocket client lost (oldest first)"
)
WS_CLIENTS = Gauge("evi_gateway_ws_clients", "Connected websocket clients")

_ids = itertools.count(1)


class Subscriber:
    """One websocket client's view: the streams it wants and what waits to be sent to it."""

    __slots__ = (
        "_wakeup", "closed", "connected", "dropped", "id", "maxlen", "queue", "remote", "sent",
        "streams",
    )

    def __init__(self, streams: frozenset[str] | None, maxlen: int, remote: str = "") -> None:
        self.id = f"c{next(_ids)}"
        self.streams = streams  # None = every stream
        self.maxlen = maxlen
        self.remote = remote
        self.queue: deque[tuple[str, bytes]] = deque()
        self._wakeup = asyncio.Event()
        self.dropped = 0
        self.sent = 0
        self.closed = False
        self.connected = time.time()

    def wants(self, stream: str) -> bool:
        return self.streams is None or stream in self.streams

    def offer(self, stream: str, message: bytes) -> str | None:
        """Queue a message; return the stream of the message dropped to make room, if any."""
        lost = None
        if len(self.queue) >= self.maxlen:
            lost = self.queue.popleft()[0]
            self.dropped += 1
            WS_DROPPED.inc()
        self.queue.append((stream, message))
        WS_QUEUED.inc()
        self._wakeup.set()
        return lost

    def close(self) -> None:
        self.closed = True
        self._wakeup.set()

    async def next(self) -> bytes | None:
        """The oldest queued message; None once the subscriber is closed."""
        while not self.queue:
            if self.closed:
                return None
            self._wakeup.clear()
            await self._wakeup.wait()
        if self.closed:
            return None
        self.sent += 1
        return self.queue.popleft()[1]

    def view(self) -> dict[str, object]:
        return {
            "id": self.id,
            "remote": self.remote,
            "streams": sorted(self.streams) if self.streams is not None else None,
            "queued": len(self.queue),
            "sent": self.sent,
            "dropped": self.dropped,
            "connected_s": round(time.time() - self.connected, 1),
        }


class Subscribers:
    """Every connected client; delivers a message to those that want its stream."""

    def __init__(self, maxlen: int) -> None:
        self.maxlen = maxlen
        self.all: dict[str, Subscriber] = {}
        self.dropped_total = 0
        self.dropped_by_stream: dict[str, int] = {}

    def add(self, streams: Iterable[str] | None, remote: str = "") -> Subscriber:
        sub = Subscriber(frozenset(streams) if streams is not None else None, self.maxlen, remote)
        self.all[sub.id] = sub
        WS_CLIENTS.set(len(self.all))
        return sub

    def remove(self, sub: Subscriber) -> None:
        sub.close()
        sub.queue.clear()
        self.all.pop(sub.id, None)
        WS_CLIENTS.set(len(self.all))

    def wanted(self, stream: str) -> bool:
        return any(sub.wants(stream) for sub in self.all.values())

    def publish(self, stream: str, message: bytes) -> int:
        """Offer to every interested client; return how many got it queued."""
        n = 0
        for sub in self.all.values():
            if sub.wants(stream):
                n += 1
                self._offer(sub, stream, message)
        return n

    def broadcast(self, message: bytes) -> None:
        """Control messages (Kafka status) go to everyone, under the key of no stream."""
        for sub in self.all.values():
            self._offer(sub, "", message)

    def _offer(self, sub: Subscriber, stream: str, message: bytes) -> None:
        lost = sub.offer(stream, message)
        if lost is not None:
            self.dropped_total += 1
            if lost:
                self.dropped_by_stream[lost] = self.dropped_by_stream.get(lost, 0) + 1

    def __len__(self) -> int:
        return len(self.all)
