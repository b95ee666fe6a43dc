"""Websocket subscribers: one bounded queue each, so a slow client only ever loses its own
oldest messages (counted) and never blocks the consumer or the other clients. A frame sent alone
(`latest`) replaces the one of its stream still queued, if any: a viewer needs only the newest
picture, so frames never hold more than one place per stream and never crowd out results.

Clients are indexed by the streams they view, those of `ids=*` apart: a message costs O(its
stream's viewers + the `ids=*` ones), whatever the number of other clients, and whether anyone
wants a stream is O(1). Per-stream loss counts go to `on_drop`, the owner of bounded per-stream
state."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from collections.abc import Callable, Iterable

from prometheus_client import Counter, Gauge

from gateway.schemas import ClientView

WS_QUEUED = Counter("evi_gateway_ws_messages_total", "Messages queued to websocket clients")
WS_DROPPED = Counter(
    "evi_gateway_ws_dropped_total", "Messages a slow websocket client lost (oldest first)"
)
WS_CLIENTS = Gauge("evi_gateway_ws_clients", "Connected websocket clients")
WS_REPLACED = Counter(
    "evi_gateway_ws_frames_replaced_total",
    "Frames sent alone replaced in a client's queue by a newer frame of the same stream",
)

_ids = itertools.count(1)


class Latest:
    """A queued frame alone; a newer frame of the same stream overwrites it in place."""

    __slots__ = ("message",)

    def __init__(self, message: bytes) -> None:
        self.message = message


class Subscriber:
    """One websocket client's view: the streams it wants and what waits to be sent to it."""

    __slots__ = (
        "_latest", "_wakeup", "closed", "connected", "dropped", "id", "maxlen", "queue", "remote",
        "replaced", "sent", "streams",
    )

    def __init__(self, streams: frozenset[str] | None, maxlen: int, remote: str = "") -> None:
        self.id = f"c{next(_ids)}"
        self.streams = streams  # None = every stream
        self.maxlen = maxlen
        self.remote = remote
        self.queue: deque[tuple[str, bytes | Latest]] = deque()
        self._latest: dict[str, Latest] = {}  # stream -> its frame alone still queued
        self.replaced = 0  # frames alone replaced by a newer one before they were sent
        self._wakeup = asyncio.Event()
        self.dropped = 0
        self.sent = 0
        self.closed = False
        self.connected = time.time()

    def wants(self, stream: str) -> bool:
        return self.streams is None or stream in self.streams

    def offer(self, stream: str, message: bytes, latest: bool = False) -> str | None:
        """Queue a message; return the stream of the message dropped to make room, if any.
        `latest`: a frame alone, which takes the place of its stream's queued one if any."""
        if latest and (held := self._latest.get(stream)) is not None:
            held.message = message
            self.replaced += 1
            WS_REPLACED.inc()
            return None
        lost = None
        if len(self.queue) >= self.maxlen:
            lost, old = self.queue.popleft()
            if isinstance(old, Latest):
                del self._latest[lost]
            self.dropped += 1
            WS_DROPPED.inc()
        if latest:
            held = self._latest[stream] = Latest(message)
            self.queue.append((stream, held))
        else:
            self.queue.append((stream, message))
        WS_QUEUED.inc()
        self._wakeup.set()
        return lost

    def queued(self) -> list[bytes]:
        """The messages waiting, oldest first (as `next` would give them)."""
        return [m.message if isinstance(m, Latest) else m for _, m in self.queue]

    def clear(self) -> None:
        self.queue.clear()
        self._latest.clear()

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
        stream, message = self.queue.popleft()
        if isinstance(message, Latest):
            del self._latest[stream]
            return message.message
        return message

    def view(self) -> ClientView:
        return ClientView(
            id=self.id,
            remote=self.remote,
            streams=sorted(self.streams) if self.streams is not None else None,
            queued=len(self.queue),
            sent=self.sent,
            dropped=self.dropped,
            connected_s=round(time.time() - self.connected, 1),
        )


class Subscribers:
    """Every connected client; delivers a message to those that want its stream."""

    def __init__(self, maxlen: int, on_drop: Callable[[str], None] | None = None) -> None:
        self.maxlen = maxlen
        self.on_drop = on_drop
        self.all: dict[str, Subscriber] = {}
        self.dropped_total = 0
        # Dicts, not sets: clients of a stream are offered a message in the order they came.
        self._viewers: dict[str, dict[str, Subscriber]] = {}  # stream -> its clients by id
        self._every: dict[str, Subscriber] = {}  # clients of every stream (ids=*) by id

    def add(self, streams: Iterable[str] | None, remote: str = "") -> Subscriber:
        sub = Subscriber(frozenset(streams) if streams is not None else None, self.maxlen, remote)
        self.all[sub.id] = sub
        if sub.streams is None:
            self._every[sub.id] = sub
        else:
            for stream in sub.streams:
                self._viewers.setdefault(stream, {})[sub.id] = sub
        WS_CLIENTS.set(len(self.all))
        return sub

    def remove(self, sub: Subscriber) -> None:
        sub.close()
        sub.clear()
        if self.all.pop(sub.id, None) is not None:
            if sub.streams is None:
                del self._every[sub.id]
            else:
                for stream in sub.streams:
                    viewers = self._viewers[stream]
                    del viewers[sub.id]
                    if not viewers:
                        del self._viewers[stream]
        WS_CLIENTS.set(len(self.all))

    def wanted(self, stream: str) -> bool:
        return bool(self._every) or stream in self._viewers

    def viewers(self, stream: str) -> int:
        """How many clients a message of this stream goes to."""
        return len(self._viewers.get(stream, ())) + len(self._every)

    def publish(self, stream: str, message: bytes, latest: bool = False) -> int:
        """Offer to every interested client; return how many got it queued."""
        n = 0
        for group in (self._viewers.get(stream), self._every):
            if group:
                for sub in group.values():
                    self._offer(sub, stream, message, latest)
                n += len(group)
        return n

    def broadcast(self, message: bytes) -> None:
        """Control messages (Kafka status) go to everyone, under the key of no stream."""
        for sub in self.all.values():
            self._offer(sub, "", message)

    def _offer(self, sub: Subscriber, stream: str, message: bytes, latest: bool = False) -> None:
        lost = sub.offer(stream, message, latest)
        if lost is not None:
            self.dropped_total += 1
            if lost and self.on_drop is not None:
                self.on_drop(lost)

    def __len__(self) -> int:
        return len(self.all)
