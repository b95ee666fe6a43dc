"""A tile always gets its stream's newest picture: frames go alone while results lag behind (or
none come), at most `frames_alone_fps` per stream, one queued per stream per viewer, and never
at the cost of results. Fed in memory (no broker); the browser side is
tests/e2e/test_tiles_overload.py."""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

from evi.wire import FrameMeta
from gateway.pictures import AloneFrames, Pictures
from gateway.protocol import frame_header, pack_message, unpack_message
from gateway.subscribers import Subscriber, Subscribers
from tests.gateway import records as rec
from tests.gateway.feed import jpeg
from tests.gateway.test_fanout import fanout, feed, stats

JPEGS = [jpeg(i) for i in range(4)]  # a few real JPEGs: encoding hundreds would slow the tests


def taken(sub: Subscriber) -> list[tuple[dict[str, Any], bytes]]:
    out = [unpack_message(m) for m in sub.queued()]
    sub.clear()
    return out


def kinds_of(got: list[tuple[dict[str, Any], bytes]]) -> list[tuple[str, int]]:
    return [(h["type"], h["seq"]) for h, _ in got]


def test_a_frame_goes_alone_only_when_results_are_behind_and_at_most_fps() -> None:
    alone = AloneFrames(behind_ms=1000, fps=5)
    p = Pictures()
    assert alone.due(p, 10_000, now=0.0), "no result yet: the frame is the picture"
    assert not alone.due(p, 10_040, now=0.1), "within 1/fps of the last one"
    assert alone.due(p, 10_080, now=0.2)
    alone.paired(p, 10_500)
    assert not alone.due(p, 11_400, now=5.0), "results 0.9 s behind: their frames suffice"
    assert alone.due(p, 11_600, now=5.0), "1.1 s behind: the frame goes alone"
    alone.paired(p, 9_000)  # an older result does not move the newest paired frame back
    assert p.paired_ts == 10_500
    assert alone.due(p, 1_000, now=9.0), "a clock set back counts as behind, not ahead"
    assert p.alone == 4
    never = AloneFrames(behind_ms=0, fps=5)
    assert not never.due(Pictures(), 10_000, now=math.inf)


async def test_frames_go_alone_while_results_lag_far_behind_the_frames() -> None:
    # Results for frames long gone from the cache: they leave without a picture, so the
    # frames themselves must reach the tile (issue 19: every tile was blank).
    f = fanout(frame_cache=4, frames_alone_after_ms=1000, frames_alone_fps=2)
    sub = f.subscribers.add(["cam1"])
    feed(f, [rec.frame("cam1", s, 100_000 + 100 * s, JPEGS[s % 4]) for s in range(20)])
    got = taken(sub)
    assert kinds_of(got) == [("frame", 0)], "one frame, then the rate limit (2 fps)"
    await asyncio.sleep(0.55)
    feed(f, [rec.result("cam1", s, 100_000 + 100 * s) for s in range(3)]
         + [rec.frame("cam1", 20, 102_000, JPEGS[0])])
    got = taken(sub)
    assert kinds_of(got) == [("result", 0), ("result", 1), ("result", 2), ("frame", 20)]
    assert [h["image"] for h, _ in got[:3]] == [False] * 3, "their frames left the cache"
    assert got[3][1] == JPEGS[0]
    assert f.streams.get("cam1").pictures.alone == 2  # type: ignore[union-attr]


async def test_no_frame_goes_alone_while_results_keep_up() -> None:
    f = fanout(frames_alone_after_ms=1000, frames_alone_fps=1000)
    sub = f.subscribers.add(["cam1"])
    feed(f, [rec.frame("cam1", 0, 5000, JPEGS[0]), rec.result("cam1", 0, 5000)])
    assert kinds_of(taken(sub)) == [("frame", 0), ("result", 0)], "the frame came first"
    msgs = []
    for s in range(1, 30):  # results ~200 ms behind their frames, paired from the cache
        msgs.append(rec.frame("cam1", s, 5000 + 40 * s, JPEGS[s % 4]))
        if s >= 6:
            msgs.append(rec.result("cam1", s - 5, 5000 + 40 * (s - 5)))
        if len(msgs) >= f.handover.chunk - 1:
            feed(f, msgs)
            msgs = []
            await asyncio.sleep(0.002)
    feed(f, msgs)
    got = taken(sub)
    frames_alone = [seq for kind, seq in kinds_of(got) if kind == "frame"]
    assert frames_alone == [], "results carry the pictures; frames alone would double the bytes"
    assert [(h["seq"], h["image"]) for h, _ in got] == [(s, True) for s in range(1, 25)]


def test_a_viewer_queues_one_frame_alone_per_stream_the_newest_and_keeps_every_result() -> None:
    subs = Subscribers(maxlen=16)
    slow = subs.add(None)
    for i in range(200):  # a viewer that reads nothing: 3 streams' frames, some results
        stream = f"cam{i % 3}"
        subs.publish(stream, b"frame %s %d" % (stream.encode(), i), latest=True)
        if i % 20 == 0:
            subs.publish(stream, b"result %d" % i)
    queued = slow.queued()
    assert len(queued) == 13 and slow.dropped == 0
    assert [m for m in queued if m.startswith(b"result")] == [b"result %d" % i
                                                              for i in range(0, 200, 20)]
    assert sorted(m for m in queued if m.startswith(b"frame")) == [
        b"frame cam0 198", b"frame cam1 199", b"frame cam2 197"]
    assert slow.replaced == 200 - 3


async def test_a_replaced_frame_is_sent_once_and_a_dropped_one_frees_its_place() -> None:
    subs = Subscribers(maxlen=2)
    sub = subs.add(["cam1", "cam2"])
    subs.publish("cam1", b"f1", latest=True)
    subs.publish("cam1", b"f2", latest=True)  # replaces f1 in place
    assert await sub.next() == b"f2"
    subs.publish("cam1", b"f3", latest=True)
    subs.publish("cam2", b"r1")
    subs.publish("cam2", b"r2")  # the queue is full: f3, the oldest, is dropped
    assert sub.queued() == [b"r1", b"r2"] and sub.dropped == 1
    subs.publish("cam1", b"f4", latest=True)  # a new place, not the dropped one's
    assert sub.queued() == [b"r2", b"f4"]
    assert [await sub.next(), await sub.next()] == [b"r2", b"f4"]


async def test_overload_of_12_streams_keeps_every_tile_in_pictures_and_queues_bounded() -> None:
    # 12 streams at 25 fps for 2.4 s of capture time, results 12 s behind and far fewer than
    # frames: every stream gets pictures, every result is sent, a slow viewer holds <= 32.
    f = fanout(frame_cache=8, frames_alone_after_ms=1000, frames_alone_fps=5, client_queue=32)
    fast, slow = f.subscribers.add(None), f.subscribers.add(None)
    streams = [f"cam{i:02d}" for i in range(12)]
    got: list[tuple[dict[str, Any], bytes]] = []
    t0 = 1_000_000
    started = time.monotonic()
    for step in range(60):
        batch = []
        for k, cam in enumerate(streams):
            batch.append(rec.frame(cam, 300 + step, t0 + 12_000 + 40 * step, JPEGS[k % 4]))
            if step % 3 == 0:
                batch.append(rec.result(cam, step, t0 + 40 * step))
        f.handover.take(batch)
        for _ in range(10):
            got += taken(fast)
            await asyncio.sleep(0)
        await asyncio.sleep(0.02)  # 60 steps of 20 ms: ~1.2 s, room for ~6 frames per stream
        assert len(slow.queue) <= 32
    got += taken(fast)
    most = int((time.monotonic() - started) * 5) + 1  # 5 fps over the time it took, wherever
    frames = {cam: [h["seq"] for h, _ in got if h["type"] == "frame" and h["stream"] == cam]
              for cam in streams}
    results = {cam: [h["seq"] for h, _ in got if h["type"] == "result" and h["stream"] == cam]
               for cam in streams}
    for cam in streams:
        assert 2 <= len(frames[cam]) <= most, (cam, frames[cam], most)
        assert frames[cam][0] == 300, "the first frame went at once"
        assert results[cam] == list(range(0, 60, 3)), "every result, in order"
    assert fast.dropped == 0
    assert slow.dropped > 0 and len(slow.queue) == 32
    assert sum(1 for m in slow.queued() if unpack_message(m)[0]["type"] == "frame") <= 12


async def test_results_with_gaps_say_frames_are_being_skipped() -> None:
    f = fanout()
    f.subscribers.add(["cam1", "cam2"])
    # cam1: drop-stale keeps one frame in 10 while behind; cam2: every frame answered.
    feed(f, [rec.result("cam1", s, 1000 + s) for s in range(0, 50, 10)])
    feed(f, [rec.result("cam2", s, 1000 + s) for s in range(5)])
    [m1] = stats(f, "cam1").models
    [m2] = stats(f, "cam2").models
    assert (m1.skipped, m1.skipped_per_s) == (36, 3.6)  # 36 skipped over the 10 s window
    assert (m2.skipped, m2.skipped_per_s) == (0, 0.0)


async def test_frames_lost_before_the_processor_are_not_called_skipped() -> None:
    # The producer lost seqs 3-7 (never in Kafka): the results' gap is theirs, not drop-stale's.
    f = fanout()
    f.subscribers.add(["cam1"])
    seqs = [0, 1, 2, 8, 9, 10, 20]
    feed(f, [rec.frame("cam1", s, 1000 + s, JPEGS[0]) for s in seqs[:-1]])
    feed(f, [rec.result("cam1", s, 1000 + s) for s in seqs[:-1]])
    [m] = stats(f, "cam1").models
    assert (m.skipped, m.skipped_per_s) == (5, 0.0)
    feed(f, [rec.frame("cam1", 20, 1020, JPEGS[0]), rec.result("cam1", 20, 1020)])
    [m] = stats(f, "cam1").models
    assert (m.skipped, m.skipped_per_s) == (14, 0.0), "frames 11-19 never came either"
    feed(f, [rec.frame("cam1", s, 1000 + s, JPEGS[0]) for s in range(21, 31)])
    feed(f, [rec.result("cam1", 30, 1030)])
    [m] = stats(f, "cam1").models
    assert (m.skipped, m.skipped_per_s) == (23, 0.9), "21-29 came and were not answered"


def test_frame_alone_header_says_it_is_a_picture() -> None:
    meta = FrameMeta("cam1", 7, 1234, 320, 240, producer="test")
    h, body = unpack_message(pack_message(frame_header(meta), b"jpeg"))
    assert (h["type"], h["stream"], h["seq"], h["ts_ms"], h["image"], body) == (
        "frame", "cam1", 7, 1234, True, b"jpeg")
