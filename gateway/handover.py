"""Batches of records from the feed thread to the event loop, handled in Kafka's order a bounded
amount per loop step.

The feed thread waits while MAX_BATCHES_IN_FLIGHT batches are handed over and not finished, so
the gateway's memory is bounded when the loop falls behind. A step ends after `chunk` messages
published (or RECORDS_PER_STEP records, since records nobody wants publish nothing), so a burst
neither overflows the queues of clients that keep up nor starves HTTP and the websocket writers;
the rest of the batch goes on in the next step. A batch's in-flight slot is given back whatever
its records do, so the feed thread never waits for good.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable

from confluent_kafka import Message

from gateway.health import FeedHealth

MAX_BATCHES_IN_FLIGHT = 8  # the feed thread waits when the loop is this far behind
RECORDS_PER_STEP = 256  # then the loop serves HTTP and websockets before it goes on


class Handover:
    def __init__(self, handle: Callable[[Message], None], drained: Callable[[], None],
                 health: FeedHealth, chunk: int) -> None:
        self.handle = handle  # one record, on the loop; must not raise
        self.drained = drained  # on the loop, once every batch handed over is handled
        self.health = health
        self.chunk = chunk
        self.budget = chunk  # messages this loop step may still publish
        self.in_flight = threading.Semaphore(MAX_BATCHES_IN_FLIGHT)
        self.stopping = threading.Event()
        self.loop: asyncio.AbstractEventLoop | None = None
        self._batches: deque[list[Message]] = deque()  # handed over, not finished; oldest first
        self._pos = 0  # records of the oldest batch already handled
        self._dispatching = False  # a dispatch step is scheduled

    def published(self) -> None:
        self.budget -= 1

    # --- from the feed thread ----------------------------------------------------------------
    def call(self, fn: Callable[..., object], *args: object) -> bool:
        """Run fn on the loop soon; False once the loop is closed (shutting down)."""
        assert self.loop is not None
        try:
            self.loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:
            return False
        return True

    def from_thread(self, batch: list[Message]) -> None:
        self.health.handed()
        while not self.in_flight.acquire(timeout=0.5):
            if self.stopping.is_set():
                self.health.done()
                return
        if not self.call(self.take, batch):
            self.in_flight.release()
            self.health.done()

    # --- event loop ---------------------------------------------------------------------------
    def take(self, batch: list[Message]) -> None:
        """A batch from the feed thread: queued behind those not finished, so records are
        handled in the order Kafka gave them even when a batch takes several loop steps."""
        self._batches.append(batch)
        if not self._dispatching:
            self._dispatch()

    def _dispatch(self) -> None:
        self._dispatching = False
        self.budget = self.chunk
        self.health.stepped()
        end = self._pos + RECORDS_PER_STEP
        while self._batches and self.budget > 0 and self._pos < end:
            batch = self._batches[0]
            i = self._pos
            try:
                while i < len(batch) and self.budget > 0 and i < end:
                    i += 1
                    self.handle(batch[i - 1])
            finally:  # whatever happened, a finished batch gives its in-flight slot back
                self._pos = i
                if i >= len(batch):
                    self._batches.popleft()
                    end -= i
                    self._pos = 0
                    self.in_flight.release()
                    self.health.done()
        if self._batches:
            try:
                asyncio.get_running_loop().call_soon(self._dispatch)
                self._dispatching = True
            except RuntimeError:  # the loop is closing
                self._dispatching = False
        else:
            self.drained()
