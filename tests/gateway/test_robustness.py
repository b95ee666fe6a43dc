"""Nothing a record holds stops the fan-out: malformed records are counted by topic and reason
and skipped, a record whose handling raises costs only itself, duplicates survive restarts,
clock jumps and forged seqs, and every table keyed by names from the data is bounded. In
memory, no broker."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Any

import pytest
from confluent_kafka import Message
from prometheus_client import REGISTRY

import gateway.intake as intake_module
from evi.settings import TopicSettings
from evi.wire import Result
from gateway.fanout import Fanout
from gateway.handover import MAX_BATCHES_IN_FLIGHT
from gateway.health import FeedHealth
from gateway.protocol import unpack_message
from gateway.settings import GatewaySettings
from gateway.subscribers import Subscriber
from tests.gateway import malformed
from tests.gateway import records as rec
from tests.gateway.feed import jpeg


def fanout(**kw: Any) -> Fanout:
    kw.setdefault("client_queue", 10_000)
    kw.setdefault("frames_alone_after_ms", 0)
    kw.setdefault("pair_wait_ms", 0)  # results without frames leave at once
    return Fanout(GatewaySettings(topics=TopicSettings(prefix=rec.PREFIX), auth_required=False,
                                  **kw))


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def bad_counts(topics: list[str], reasons: set[str]) -> Counter[tuple[str, str]]:
    return Counter({(t, r): metric("evi_gateway_bad_records_total", topic=t, reason=r)
                    for t in topics for r in reasons})


def results_of(sub: Subscriber) -> list[tuple[str, int, int]]:
    out = []
    for raw in sub.queued():
        h, _ = unpack_message(raw)
        if h["type"] == "result":
            out.append((h["stream"], h["seq"], h["ts_ms"]))
    sub.clear()
    return out


def run(f: Fanout, batch: list[Message]) -> None:
    """As the feed thread hands a batch over (an in-flight slot, given back when done)."""
    assert f.handover.in_flight.acquire(timeout=1)
    f.health.handed()
    f.handover.take(batch)


async def drain(sub: Subscriber | None = None) -> list[tuple[str, int, int]]:
    """Let the rest of the batches run (chunks are scheduled with call_soon), reading `sub`."""
    got = []
    for _ in range(200):
        await asyncio.sleep(0)
        if sub is not None:
            got += results_of(sub)
    return got


async def test_malformed_records_are_counted_by_topic_and_reason_and_good_ones_flow() -> None:
    f = fanout()
    sub = f.subscribers.add(None)
    topics = [f"{rec.PREFIX}.results.face", f"{rec.PREFIX}.streams", f"{rec.PREFIX}.frames.face"]
    reasons = {b.reason for b in malformed.ALL}
    before = bad_counts(topics, reasons)
    batch: list[Message] = []
    for seq, bad in enumerate(malformed.ALL):  # one bad record before every good pair
        batch += [bad.message(rec.PREFIX), rec.frame("good", seq, 1000 + seq, jpeg(seq % 8)),
                  rec.result("good", seq, 1000 + seq)]
    run(f, batch)
    await drain()
    counted = bad_counts(topics, reasons)
    counted.subtract(before)
    want = Counter((bad.message(rec.PREFIX).topic(), bad.reason) for bad in malformed.ALL)
    assert +counted == want
    assert results_of(sub) == [("good", s, 1000 + s) for s in range(len(malformed.ALL))]
    assert f.handover.in_flight._value == MAX_BATCHES_IN_FLIGHT and f.health.outstanding == 0
    assert list(f.streams) == ["good"] and len(f.registry) == 0


async def test_a_record_whose_handling_raises_costs_only_itself(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    f = fanout(client_queue=8)  # chunks of 4: the batch is handled over many loop steps
    sub = f.subscribers.add(["cam1"])
    real = intake_module.result

    def flaky(m: Message) -> Result:
        r = real(m)
        if r.seq % 2:
            raise KeyError("a bug in the gateway")
        return r

    monkeypatch.setattr(intake_module, "result", flaky)
    topic = f"{rec.PREFIX}.results.face"
    before = metric("evi_gateway_bad_records_total", topic=topic, reason="error")
    caplog.set_level(logging.WARNING, "evi.gateway")
    got: list[tuple[str, int, int]] = []
    for start in range(0, 200, 20):  # 10 batches: more than the 8 in-flight slots
        run(f, [rec.result("cam1", s, 1000 + s) for s in range(start, start + 20)])
        got += results_of(sub) + await drain(sub)
    assert [s for _, s, _ in got] == list(range(0, 200, 2)), "every good one, in order"
    assert metric("evi_gateway_bad_records_total", topic=topic, reason="error") - before == 100
    assert f.handover.in_flight._value == MAX_BATCHES_IN_FLIGHT, "every slot given back"
    logged = [r for r in caplog.records if "raised" in r.getMessage()]
    assert len(logged) == 1, "one line per 10 s, not one per record"


async def test_duplicates_survive_restart_clock_jump_and_a_forged_seq() -> None:
    f = fanout()
    sub = f.subscribers.add(["cam1"])
    sent = [("cam1", s, 10_000 + s) for s in range(5)]  # a first run
    sent += [("cam1", s, 20_000 + s) for s in range(3)]  # the producer restarts: seq from 0
    sent += [("cam1", s, 5_000 + s) for s in range(3, 6)]  # its clock jumps back an hour
    sent += [("cam1", 10**15, 30_000)]  # one forged seq
    sent += [("cam1", s, 30_001 + s) for s in range(6, 10)]  # the genuine ones go on
    run(f, [rec.result(*x) for x in sent])
    run(f, [rec.result(*x) for x in sent[:3] + sent[9:11] + sent[-2:]])  # replays of each era
    await drain()
    assert results_of(sub) == sent
    st = f.streams.get("cam1")
    assert st is not None
    snap = st.stats.snapshot()
    assert (snap.results_seen, snap.drops.duplicates) == (len(sent), 7)
    assert snap.drops.results == 0, "no gap counted across a restart, a jump or a forgery"
    assert snap.last_seq == 9


async def test_a_replay_is_recognised_only_within_the_window() -> None:
    f = fanout(dedup_window=16)
    sub = f.subscribers.add(["cam1"])
    run(f, [rec.result("cam1", s, 1000 + s) for s in range(40)])
    run(f, [rec.result("cam1", s, 1000 + s) for s in (39, 24, 23, 0)])  # 24..39 are remembered
    await drain()
    assert [s for _, s, _ in results_of(sub)] == [*range(40), 23, 0]
    st = f.streams.get("cam1")
    assert st is not None and st.stats.snapshot().drops.duplicates == 2


async def test_streams_past_the_cap_push_out_the_least_recently_seen() -> None:
    f = fanout(max_streams=3)
    sub = f.subscribers.add(["s0"])
    evicted = metric("evi_gateway_streams_evicted_total", table="streams", reason="cap")
    run(f, [rec.result(f"s{i}", 0, 1000) for i in range(3)])
    flood: list[Message] = []
    for i in range(50):  # a flood of new ids while s0 keeps sending
        flood += [rec.result("s0", i + 1, 1001 + i), rec.result(f"flood{i}", 0, 1000)]
    run(f, flood)
    got = results_of(sub) + await drain(sub)
    assert list(f.streams) == ["flood48", "s0", "flood49"], "least recently seen first"
    evicted = metric("evi_gateway_streams_evicted_total", table="streams", reason="cap") - evicted
    assert evicted == 50
    assert [s for _, s, _ in got] == list(range(51))
    st = f.streams.get("s0")
    assert st is not None and st.stats.snapshot().results_seen == 51, "its numbers kept"


async def test_idle_streams_are_let_go(monkeypatch: pytest.MonkeyPatch) -> None:
    f = fanout(stream_idle_s=1)
    run(f, [rec.result("old", 0, 1000)])
    st = f.streams.get("old")
    assert st is not None
    st.seen -= 2  # last seen 2 s ago
    run(f, [rec.result("new", 0, 1000)])
    f.pairing.next_sweep = 0
    f._flush_step()
    assert list(f.streams) == ["new"]


async def test_registry_models_and_client_drops_are_bounded() -> None:
    f = fanout(max_registry=5, max_models=3, client_queue=1)
    sub = f.subscribers.add(None)
    run(f, [rec.registry(f"r{i}") for i in range(20)])
    await drain()
    assert list(f.registry) == [f"r{i}" for i in range(15, 20)]
    run(f, [rec.result("cam1", 0, 1000, model=f"m{i}") for i in range(10)])
    await drain()
    st = f.streams.get("cam1")
    assert st is not None and sorted(st.stats.models) == ["m0", "m1", "m2"]
    assert f.counts.results == {"face": {"m0": 1, "m1": 1, "m2": 1, "other": 7}}
    assert sub.dropped > 0 and st.stats.client_drops == 2, "drops of cam1's 3 results but one"
    f.streams.remove("cam1")
    assert f.streams.get("cam1") is None, "a stream's drop count goes with it"


async def test_frames_are_cached_only_for_streams_a_client_wants() -> None:
    f = fanout()
    run(f, [rec.frame(f"cam{i}", 0, 1000, jpeg(0)) for i in range(3)])
    assert cached(f) == {} and len(f.streams) == 3
    sub = f.subscribers.add(["cam1"])
    run(f, [rec.frame(f"cam{i}", 1, 1001, jpeg(1)) for i in range(3)])
    assert cached(f) == {"cam1": [1]}
    f.subscribers.remove(sub)
    f.pairing.next_sweep = 0
    f._flush_step()
    assert cached(f) == {}


def cached(f: Fanout) -> dict[str, list[int]]:
    out = {}
    for stream in f.streams:
        st = f.streams.get(stream)
        if st is not None and st.frames:
            out[stream] = list(st.frames)
    return out


def test_feed_health_names_what_stopped() -> None:
    h = FeedHealth(stall_s=5)
    t = h.ticked
    assert h.problem(True, t + 1) == ""
    assert h.problem(False, t + 1) == "kafka feed thread is not running"
    assert h.problem(True, t + 6) == "kafka poll loop stalled for 6s"
    h.handed()  # a batch waits for the loop
    h.ticked = h.progress + 100  # the poll loop goes on turning
    assert h.problem(True, h.progress + 4) == ""
    assert h.problem(True, h.progress + 7) == "records not dispatched for 7s"
    h.done()
    assert h.problem(True, h.progress + 7) == "", "nothing waits: no progress is needed"
