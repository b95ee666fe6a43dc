"""The fan-out's pairing, ordering, de-duplication and counting, fed in memory (no broker)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from confluent_kafka import Message

import gateway.pairing as pairing_module
from evi.settings import TopicSettings
from gateway.fanout import Fanout
from gateway.protocol import unpack_message
from gateway.schemas import StreamStatsView
from gateway.settings import GatewaySettings
from gateway.subscribers import Subscriber
from gateway.views import MAX_CLIENT_LIST, GatewayView
from tests.gateway import records as rec
from tests.gateway.feed import jpeg


def fanout(**kw: Any) -> Fanout:
    kw.setdefault("client_queue", 128)
    kw.setdefault("frames_alone_after_ms", 0)
    return Fanout(GatewaySettings(topics=TopicSettings(prefix=rec.PREFIX), auth_required=False,
                                  **kw))


def feed(f: Fanout, msgs: list[Message]) -> None:
    assert len(msgs) <= f.handover.chunk, "one chunk: handled at once"
    f.handover.take(msgs)


def stats(f: Fanout, stream: str) -> StreamStatsView:
    st = f.streams.get(stream)
    assert st is not None, f"{stream} not tracked"
    return st.stats.snapshot()


def taken(sub: Subscriber) -> list[tuple[dict[str, Any], bytes]]:
    out = [unpack_message(m) for m in sub.queued()]
    sub.clear()
    return out


async def test_result_carries_its_frame_untouched() -> None:
    f = fanout()
    sub = f.subscribers.add(["cam1"])
    data = jpeg(1)
    feed(f, [rec.frame("cam1", 1, 1000, data), rec.result("cam1", 1, 1000, n=2)])
    [(h, body)] = taken(sub)
    assert body == data
    assert h["type"] == "result" and h["image"] is True
    assert (h["stream"], h["seq"], h["ts_ms"], h["model"], h["kind"]) == ("cam1", 1, 1000, "m1",
                                                                       "face")
    assert [d["box"] for d in h["detections"]] == [[0.0, 0.1, 0.2, 0.5], [0.1, 0.1, 0.3, 0.5]]


async def test_results_wait_for_late_frames_in_order() -> None:
    f = fanout()
    sub = f.subscribers.add(None)
    feed(f, [rec.result("cam1", 1, 1000), rec.result("cam1", 2, 1100)])
    assert taken(sub) == [], "results wait: their frames may still come"
    feed(f, [rec.frame("cam1", 1, 1000, jpeg(1))])
    assert [(h["seq"], body) for h, body in taken(sub)] == [(1, jpeg(1))]
    feed(f, [rec.frame("cam1", 2, 1100, jpeg(2)), rec.result("cam1", 3, 1200),
             rec.frame("cam1", 3, 1200, jpeg(3))])
    assert [(h["seq"], body) for h, body in taken(sub)] == [(2, jpeg(2)), (3, jpeg(3))]


async def test_unpaired_result_goes_without_image_after_the_wait() -> None:
    f = fanout(pair_wait_ms=50)
    sub = f.subscribers.add(["cam1"])
    feed(f, [rec.result("cam1", 7, 1000)])
    assert taken(sub) == []
    await asyncio.sleep(0.08)
    f._flush_all()
    [(h, body)] = taken(sub)
    assert (h["seq"], h["image"], body) == (7, False, b"")


async def test_result_whose_frame_is_gone_is_not_held() -> None:
    f = fanout(pair_wait_ms=10_000)
    sub = f.subscribers.add(["cam1"])
    feed(f, [rec.frame("cam1", 5, 1500, jpeg(5)), rec.result("cam1", 4, 1400)])
    [(h, body)] = taken(sub)
    assert (h["seq"], h["image"], body) == (4, False, b""), "a newer frame was seen already"


async def test_duplicates_dropped_and_a_new_run_accepted() -> None:
    f = fanout()
    sub = f.subscribers.add(["cam1"])
    first = [rec.frame("cam1", i, 1000 + i, jpeg(i)) for i in range(3)]
    feed(f, first + [rec.result("cam1", i, 1000 + i) for i in range(3)])
    feed(f, [rec.result("cam1", 1, 1001), rec.result("cam1", 2, 1002)])  # replayed
    feed(f, [rec.frame("cam1", 0, 5000, jpeg(9)), rec.result("cam1", 0, 5000)])  # producer restart
    got = taken(sub)
    assert [(h["seq"], h["ts_ms"]) for h, _ in got] == [(0, 1000), (1, 1001), (2, 1002), (0, 5000)]
    assert got[-1][1] == jpeg(9), "the new run's frame, not the old frame 0"
    snap = stats(f, "cam1")
    assert snap.results_seen == 4 and snap.drops.duplicates == 2
    assert snap.frames_seen == 4 and snap.drops.frames == 0


async def test_gaps_are_counted_as_drops() -> None:
    f = fanout()
    f.subscribers.add(["cam1"])
    feed(f, [rec.frame("cam1", s, 1000 + s, jpeg(s)) for s in (0, 1, 4)])
    feed(f, [rec.result("cam1", s, 1000 + s) for s in (0, 4)])
    drops = stats(f, "cam1").drops.model_dump()
    assert drops == {"frames": 2, "results": 3, "clients": 0, "duplicates": 0}


async def test_frames_go_alone_while_a_stream_has_no_results() -> None:
    f = fanout(frames_alone_after_ms=60_000)
    sub = f.subscribers.add(["cam1"])
    feed(f, [rec.frame("cam1", 0, 1000, jpeg(0))])
    [(h, body)] = taken(sub)
    assert (h["type"], h["seq"], body) == ("frame", 0, jpeg(0))
    feed(f, [rec.result("cam1", 0, 1000), rec.frame("cam1", 1, 1001, jpeg(1))])
    assert [h["type"] for h, _ in taken(sub)] == ["result"], "results flow: frames not alone"


async def test_each_client_gets_only_its_streams() -> None:
    f = fanout()
    one, two = f.subscribers.add(["cam1"]), f.subscribers.add(["cam2"])
    every = f.subscribers.add(None)
    msgs = []
    for s in range(3):
        for cam in ("cam1", "cam2"):
            msgs += [rec.frame(cam, s, 1000 + s, jpeg(s)), rec.result(cam, s, 1000 + s)]
    feed(f, msgs)
    assert [(h["stream"], h["seq"]) for h, _ in taken(one)] == [("cam1", s) for s in range(3)]
    assert [(h["stream"], h["seq"]) for h, _ in taken(two)] == [("cam2", s) for s in range(3)]
    assert len(taken(every)) == 6


async def test_two_models_on_one_stream_both_shown() -> None:
    f = fanout()
    sub = f.subscribers.add(["cam1"])
    feed(f, [rec.frame("cam1", 0, 1000, jpeg(0)), rec.result("cam1", 0, 1000, model="a"),
             rec.result("cam1", 0, 1000, model="b", n=2)])
    got = taken(sub)
    assert [(h["model"], len(h["detections"]), body) for h, body in got] == [
        ("a", 1, jpeg(0)), ("b", 2, jpeg(0))]
    models = stats(f, "cam1").models
    assert [(m.model, m.results_seen) for m in models] == [("a", 1), ("b", 1)]


async def test_registry_updates_and_tombstones() -> None:
    f = fanout()
    sub = f.subscribers.add(["cam1"])
    feed(f, [rec.registry("cam1"), rec.frame("cam1", 0, 1000, jpeg(0)),
             rec.result("cam1", 0, 1000)])
    info = f.registry.get("cam1")
    assert info is not None and info.status == "live"
    feed(f, [rec.registry("cam1", "ended")])
    feed(f, [rec.tombstone("cam1")])
    got = [h for h, _ in taken(sub)]
    assert [h["type"] for h in got] == ["stream", "result", "stream", "removed"]
    assert got[2]["info"]["status"] == "ended"
    assert "cam1" not in f.registry and "cam1" not in f.streams


async def test_bad_records_are_skipped() -> None:
    f = fanout()
    sub = f.subscribers.add(None)
    not_jpeg = rec.frame("cam1", 0, 1000, b"GIF89a....")
    bad_json = Message(topic=f"{rec.PREFIX}.results.face", key=b"cam1", value=b"{nope")
    feed(f, [not_jpeg, bad_json, rec.frame("cam1", 1, 1001, jpeg(1)), rec.result("cam1", 1, 1001)])
    assert [(h["type"], h["seq"]) for h, _ in taken(sub)] == [("result", 1)]


async def test_frame_copies_of_other_kinds_counted_once() -> None:
    f = fanout()
    f.subscribers.add(["cam1"])
    msgs = []
    for s in range(5):
        msgs += [rec.frame("cam1", s, 1000 + s, jpeg(s)),
                 rec.frame("cam1", s, 1000 + s, jpeg(s), kind="person")]
    feed(f, msgs)
    assert stats(f, "cam1").frames_seen == 5
    assert f.counts.frames == {"face": 5, "person": 5}


async def test_big_batches_leave_room_for_writers() -> None:
    f = fanout(client_queue=8)
    assert f.handover.chunk == 4
    sub = f.subscribers.add(["cam1"])
    msgs = [rec.frame("cam1", s, 1000 + s, jpeg(s)) for s in range(12)]
    msgs += [rec.result("cam1", s, 1000 + s) for s in range(12)]
    f.handover.take(msgs)
    got: list[int] = []
    for _ in range(20):  # a fast client: reads everything between chunks
        got += [h["seq"] for h, _ in taken(sub) if h["type"] == "result"]
        await asyncio.sleep(0)
    assert got == list(range(12)) and sub.dropped == 0


def cached(f: Fanout) -> dict[str, list[int]]:
    return {s: list(st.frames) for s in f.streams if (st := f.streams.get(s)) and st.frames}


async def test_frames_of_streams_that_stopped_are_let_go(monkeypatch: pytest.MonkeyPatch) -> None:
    f = fanout()
    f.subscribers.add(None)
    feed(f, [rec.frame("cam1", 0, 1000, jpeg(0)), rec.frame("cam2", 0, 1000, jpeg(0))])
    assert cached(f) == {"cam1": [0], "cam2": [0]}
    monkeypatch.setattr(pairing_module, "IDLE_CACHE_S", -1.0)
    f._flush_step()
    assert cached(f) == {} and "cam1" in f.streams, "stats stay, cached JPEGs go"


async def test_results_reach_their_streams_viewers_without_touching_other_clients(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    f = fanout()
    others = [f.subscribers.add([f"s{i}"]) for i in range(2000)]
    viewer, every = f.subscribers.add(["cam1"]), f.subscribers.add(None)
    offered: list[str] = []
    real_offer = Subscriber.offer

    def offer(self: Subscriber, stream: str, message: bytes, latest: bool = False) -> str | None:
        offered.append(self.id)
        return real_offer(self, stream, message, latest)

    def wants(self: Subscriber, stream: str) -> bool:
        asked.append(self.id)
        return True

    asked: list[str] = []
    monkeypatch.setattr(Subscriber, "offer", offer)
    monkeypatch.setattr(Subscriber, "wants", wants)
    feed(f, [m for s in range(3)
             for m in (rec.frame("cam1", s, 1000 + s, jpeg(s)), rec.result("cam1", s, 1000 + s))])
    assert sorted(offered) == sorted([viewer.id, every.id] * 3)
    assert asked == [], "the 2,000 clients of other streams are not even asked"
    for sub in (viewer, every):
        assert [(h["type"], h["seq"], len(j) > 0) for h, j in taken(sub)] == [
            ("result", s, True) for s in range(3)]
    assert not any(s.queue for s in others)


async def test_stats_list_the_first_clients_and_count_them_all() -> None:
    f = fanout()
    subs = [f.subscribers.add([f"s{i}"]) for i in range(MAX_CLIENT_LIST + 44)]
    stats = GatewayView(f).stats()
    assert stats.clients == MAX_CLIENT_LIST + 44
    assert [c.id for c in stats.client_list] == [s.id for s in subs[:MAX_CLIENT_LIST]]
