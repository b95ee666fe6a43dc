"""Micro-batches handed to the agent as soon as a batch slot is free, not on a timer.

faust's `Stream.take_events(max_, within)` yields its buffer when it holds `max_` events or when
`within` has passed, so at live rates every frame waits 0–`within` ms for the timer (2.5 ms on
average at 5 ms; docs/benchmarks.md, "Latency"), and a smaller `within` wakes the loop that many
more times a second. `take_when_free` yields as soon as it holds an event *and* one of the
worker's batch slots (`slot`, released when a batch's results are out) is free: at live rates a
frame goes at once, alone or with what arrived with it; while every slot is busy, frames collect
(up to `max_`), so a backlog still makes full batches without any wait chosen in advance.

It fills its buffer the way take_events does (faust/streams.py, `take_events`): a stream
processor appends `stream.current_event` while the stream is consumed passively
(`_enable_passive`), with the stream's own acking off; it acks what it yielded in a `finally`
around the `yield`, as take_events does, so the pinning of processors/handler.py applies
unchanged. tests/processors/test_take.py runs it on a real faust stream and fails if those
mechanics change under it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import faust
from faust.types import EventT


async def take_when_free(
    stream: faust.StreamT[Any], max_: int, slot: asyncio.Semaphore
) -> AsyncIterator[list[EventT[Any]]]:
    """Batches of at most `max_` events, in stream order. Each yield holds one of `slot`'s
    permits for the caller, who releases it when the batch is done (or fails)."""
    buffer: list[EventT[Any]] = []
    ready = asyncio.Event()  # the buffer holds an event
    room = asyncio.Event()  # the buffer holds fewer than max_
    room.set()
    s: Any = stream  # faust's StreamT lacks the Stream methods used here

    async def add(value: Any) -> Any:
        event = s.current_event
        if event is None:  # pragma: no cover - faust sets it before running processors
            raise RuntimeError("take_when_free: the stream has no current event")
        while len(buffer) >= max_:  # never more than max_: the stream waits, as it does for
            room.clear()  # take_events
            await s.wait(room)
        buffer.append(event)
        ready.set()
        return value

    s.enable_acks = False
    s.add_processor(add)
    s._enable_passive(s.channel)
    while not s.should_stop:
        await slot.acquire()
        await s.wait_for_stopped(ready)
        if not buffer:  # stopping
            slot.release()
            continue
        events = list(buffer)
        buffer.clear()
        ready.clear()
        room.set()
        try:
            yield events
        finally:
            for event in events:
                await s.ack(event)
