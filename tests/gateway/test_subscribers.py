"""Bounded per-client queues: a slow client loses its own oldest messages, counted."""

from __future__ import annotations

import asyncio

from gateway.subscribers import Subscribers


async def test_slow_client_loses_its_oldest_and_others_keep_all() -> None:
    lost: list[str] = []
    subs = Subscribers(maxlen=3, on_drop=lost.append)
    slow, fast = subs.add(["cam1"]), subs.add(["cam1"])
    for i in range(5):
        assert subs.publish("cam1", b"m%d" % i) == 2
        assert await fast.next() == b"m%d" % i
    assert [m for _, m in slow.queue] == [b"m2", b"m3", b"m4"]
    assert (slow.dropped, fast.dropped, subs.dropped_total) == (2, 0, 2)
    assert lost == ["cam1", "cam1"]


async def test_only_interested_clients_get_a_message() -> None:
    subs = Subscribers(maxlen=4)
    one, every = subs.add(["a"]), subs.add(None)
    assert subs.publish("b", b"x") == 1
    assert (len(one.queue), len(every.queue)) == (0, 1)
    assert subs.wanted("a") and subs.wanted("zzz")
    subs.remove(every)
    assert not subs.wanted("zzz") and len(subs) == 1


async def test_next_waits_then_ends_when_closed() -> None:
    subs = Subscribers(maxlen=4)
    sub = subs.add(None)
    waiter = asyncio.create_task(sub.next())
    await asyncio.sleep(0.01)
    assert not waiter.done()
    subs.publish("a", b"hello")
    assert await waiter == b"hello"
    later = asyncio.create_task(sub.next())
    await asyncio.sleep(0.01)
    subs.remove(sub)
    assert await later is None
    assert sub.view().sent == 1


async def test_control_messages_reach_everyone() -> None:
    lost: list[str] = []
    subs = Subscribers(maxlen=1, on_drop=lost.append)
    a, b = subs.add(["x"]), subs.add(["y"])
    subs.publish("x", b"1")
    subs.broadcast(b"status")
    assert [m for _, m in a.queue] == [b"status"] and [m for _, m in b.queue] == [b"status"]
    assert subs.dropped_total == 1 and lost == ["x"], "control messages are nobody's stream"
