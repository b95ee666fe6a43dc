"""Bounded per-client queues: a slow client loses its own oldest messages, counted."""

from __future__ import annotations

import asyncio

import pytest

from gateway.subscribers import Subscriber, Subscribers


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


async def test_a_message_is_offered_only_to_its_streams_viewers_and_ids_star(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Fan-out is indexed: 1,000 clients of other streams are neither offered nor asked."""
    offered: list[str] = []
    asked: list[str] = []
    real_offer = Subscriber.offer

    def offer(self: Subscriber, stream: str, message: bytes, latest: bool = False) -> str | None:
        offered.append(self.id)
        return real_offer(self, stream, message, latest)

    def wants(self: Subscriber, stream: str) -> bool:
        asked.append(self.id)
        return True

    monkeypatch.setattr(Subscriber, "offer", offer)
    monkeypatch.setattr(Subscriber, "wants", wants)
    subs = Subscribers(maxlen=4)
    others = [subs.add([f"other{i}", f"more{i}"]) for i in range(1000)]
    x1, every, x2 = subs.add(["x"]), subs.add(None), subs.add(["x", "y"])
    assert subs.viewers("x") == 3 and subs.viewers("other7") == 2 and subs.viewers("zz") == 1
    for i in range(50):
        assert subs.publish("x", b"x%d" % i) == 3
    assert len(offered) == 150 and not asked, "only x's viewers and the ids=* one, each time"
    assert sorted(set(offered)) == sorted([x1.id, every.id, x2.id])
    assert subs.publish("y", b"y0") == 2 and offered[150:] == [x2.id, every.id]
    assert [len(s.queue) for s in (x1, every, x2)] == [4, 4, 4]
    assert every.queued()[-1] == b"y0" and x1.queued()[-1] == b"x49"
    assert all(not s.queue for s in others)
    for sub in others[:999]:
        subs.remove(sub)
    assert subs.viewers("other0") == 1 and subs.viewers("other999") == 2, "index follows removal"
    subs.remove(every)
    assert subs.publish("q", b"nobody") == 0 and not subs.wanted("q") and subs.wanted("more999")
    subs.remove(x2)
    assert subs.publish("y", b"gone") == 0 and not subs.wanted("y") and len(subs) == 2
