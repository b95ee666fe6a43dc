"""take_when_free on a real faust stream (an in-memory channel, no broker): batches go as soon
as a slot is free, collect while none is, never exceed max_, keep stream order, and are acked by
the stream only once the consumer comes back for the next (the pinning in processors/handler.py
relies on that). Fails if faust changes the stream mechanics it borrows from take_events."""

from __future__ import annotations

import asyncio
from typing import Any

import faust

from processors.take import take_when_free


async def test_batches_go_when_a_slot_is_free_and_collect_while_none_is() -> None:
    app = faust.App("take-test", broker="kafka://127.0.0.1:1")  # never connects
    app.flow_control.resume()
    channel = app.channel()
    stream: Any = app.stream(channel)
    await stream.maybe_start()
    slot = asyncio.Semaphore(1)
    acked: list[int] = []
    own_ack = stream.ack

    async def ack(event: Any) -> bool:
        acked.append(event.value)
        return bool(await own_ack(event))

    stream.ack = ack
    batches: list[list[int]] = []
    acked_at_yield: list[list[int]] = []
    got = asyncio.Event()

    async def consume() -> None:
        async for events in take_when_free(stream, 4, slot):
            batches.append([e.value for e in events])
            acked_at_yield.append(list(acked))
            got.set()

    task = asyncio.ensure_future(consume())
    try:
        await asyncio.sleep(0.05)
        await channel.send(value=1)
        # The slot is free: the one frame goes at once and alone, with no timer to wait for.
        await asyncio.wait_for(got.wait(), 1.0)
        assert batches == [[1]]
        # The consumer holds the only slot: ten frames arrive and collect meanwhile.
        for v in range(2, 12):
            await channel.send(value=v)
        await asyncio.sleep(0.1)
        assert batches == [[1]], "a batch went while no slot was free"
        assert acked == [1], "the first batch is acked once the consumer came back for more"
        for _ in range(3):  # the batch is done: its slot is free again, three times
            got.clear()
            slot.release()
            await asyncio.wait_for(got.wait(), 1.0)
        assert batches == [[1], [2, 3, 4, 5], [6, 7, 8, 9], [10, 11]]  # ≤ max_, in order
        # Each batch's events were acked only after the consumer had it and came back.
        assert acked_at_yield == [[], [1], [1, 2, 3, 4, 5], [1, 2, 3, 4, 5, 6, 7, 8, 9]]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await stream.stop()
        # The stream made the app's consumer, whose (never started) thread made a loop of its own.
        app.consumer._thread.thread_loop.close()
