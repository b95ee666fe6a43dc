"""A micro-batch through FrameHandler and Acker with stand-ins for faust's topics, events and the
pipeline (no broker, no model): order, dead letters, drops, and when events are acked."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import faust
import pytest
from faust.types import TP
from faust.types.tuples import ConsumerMessage

from evi.errors import BadFrame
from evi.topics import Topics
from evi.wire import Detection, FrameMeta, Result, decode_result, frame_headers
from processors import metrics
from processors.handler import Acker, FrameHandler, PinnedEvent, handed
from processors.pipeline import Outcome, run_each
from processors.settings import ProcessorSettings
from tests.processors.fakes import FakeEvent, FakeSink

JPEG = b"\xff\xd8\xff\xe0 a jpeg"
CORRUPT = b"\xff\xd8\xff\xe0 truncated"
BOOM = b"\xff\xd8\xff\xe0 boom"


class FakePipeline:
    """One frame at a time through `run` (tests replace it), as FramePipeline.run_many's
    contract says: each frame its own Result or BadFrame."""

    model_name = "fake-model"
    batch = 1

    async def run_many(self, metas: list[FrameMeta], jpegs: list[bytes]) -> list[Outcome]:
        return await run_each(self.run, metas, jpegs)

    async def run(self, meta: FrameMeta, jpeg: bytes) -> Result:
        await asyncio.sleep(random.uniform(0, 0.01))  # frames of a batch finish out of order
        if jpeg == CORRUPT:
            raise BadFrame("corrupt-jpeg", "cannot decode")
        if jpeg == BOOM:
            raise RuntimeError("boom")
        return Result(meta.stream, meta.seq, meta.ts_ms, int(time.time() * 1000), "face",
                      self.model_name, infer_ms=1.0)  # fmt: skip


def event(offset: int, value: bytes, stream: str = "cam1", seq: int | None = None,
          ts_ms: int | None = None, acks: list[int] | None = None) -> FakeEvent:  # fmt: skip
    ts = int(time.time() * 1000) if ts_ms is None else ts_ms
    meta = FrameMeta(stream, offset if seq is None else seq, ts, 640, 480)
    msg = ConsumerMessage("evi.frames.face", 0, offset, ts / 1000, 0, frame_headers(meta),
                          stream.encode(), value, None)  # fmt: skip
    return FakeEvent(msg, acks if acks is not None else [])


Sent = list[tuple[bytes | None, bytes, Any]]


def handler(**changes: Any) -> tuple[FrameHandler, Sent, Sent, list[tuple[int, int]]]:
    sink = FakeSink()
    done: list[tuple[int, int]] = []
    s = ProcessorSettings(**changes)
    h = FrameHandler(s, FakePipeline(), sink,  # type: ignore[arg-type]
                     lambda p, o, ts: done.append((p, o)))  # fmt: skip
    results = sink.sent.setdefault(Topics(s.topics).results("face"), [])
    dlq = sink.sent.setdefault(Topics(s.topics).dlq("face"), [])
    return h, results, dlq, done


async def test_results_in_order_and_bad_frames_dead_lettered() -> None:
    h, results, dlq, done = handler()
    batch = [event(0, JPEG), event(1, b"GIF89a"), event(2, JPEG), event(3, CORRUPT),
             event(4, JPEG), event(5, b"")]  # fmt: skip
    deliveries = await h.handle(batch)  # type: ignore[arg-type]
    assert len(deliveries) == 6
    assert [decode_result(v).seq for _, v, _ in results] == [0, 2, 4]
    assert {k for k, _, _ in results} == {b"cam1"}  # keyed by stream
    letters = [dict(hs) for _, _, hs in dlq]
    assert [(d["evi-dlq-reason"], d["evi-dlq-origin"]) for d in letters] == [
        (b"not-jpeg", b"evi.frames.face[0]@1"),
        (b"empty", b"evi.frames.face[0]@5"),
        (b"corrupt-jpeg", b"evi.frames.face[0]@3"),
    ]
    assert sorted(done) == [(0, o) for o in range(6)]


async def test_drop_stale_keeps_each_streams_newest_frame() -> None:
    h, results, _, done = handler(policy="drop-stale", max_age_ms=1000, stale_keep_ms=0)
    old = int(time.time() * 1000) - 10_000
    batch = [event(i, JPEG, stream=s, seq=i, ts_ms=old + i) for i, s in
             enumerate(["a", "b", "a", "b", "a"])]  # fmt: skip
    before = metrics.DROPPED.labels("face", "fake-model", "stale")._value.get()
    await h.handle(batch)  # type: ignore[arg-type]
    assert [(k, decode_result(v).seq) for k, v, _ in results] == [(b"b", 3), (b"a", 4)]
    assert metrics.DROPPED.labels("face", "fake-model", "stale")._value.get() - before == 3
    assert (h.inferred, h.dropped) == (2, 3)
    assert sorted(done) == [(0, o) for o in range(5)]


async def test_any_exception_of_one_frame_is_a_dead_letter_and_the_batch_goes_on() -> None:
    h, results, dlq, done = handler()
    await h.handle([event(0, JPEG), event(1, BOOM), event(2, JPEG)])  # type: ignore[list-item]
    assert [decode_result(v).seq for _, v, _ in results] == [0, 2]
    (letter,) = [dict(hs) for _, _, hs in dlq]
    assert letter["evi-dlq-reason"] == b"frame-error"
    assert letter["evi-dlq-error"] == b"RuntimeError: boom"
    assert sorted(done) == [(0, 0), (0, 1), (0, 2)]


async def test_a_header_that_breaks_parsing_in_an_unforeseen_way_is_a_dead_letter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import processors.handler as mod

    real = mod.parse_frame

    def parse(key: Any, value: Any, headers: Any, limit: int) -> FrameMeta:
        if value == BOOM:
            raise OverflowError("int too large to convert")
        return real(key, value, headers, limit)

    monkeypatch.setattr(mod, "parse_frame", parse)
    h, results, dlq, _ = handler()
    await h.handle([event(0, BOOM), event(1, JPEG)])  # type: ignore[list-item]
    assert [decode_result(v).seq for _, v, _ in results] == [1]
    assert [dict(hs)["evi-dlq-reason"] for _, _, hs in dlq] == [b"record-error"]


async def test_out_of_range_headers_are_dead_letters_not_overflows() -> None:
    h, results, dlq, _ = handler()
    huge = event(0, JPEG)
    hs = [(k, b"9" * 300 if k == "evi-ts" else v) for k, v in huge.message.headers]
    huge.message.headers = hs
    neg = event(1, JPEG)
    neg.message.headers = [(k, b"-5" if k == "evi-seq" else v) for k, v in neg.message.headers]
    await h.handle([huge, neg, event(2, JPEG)])  # type: ignore[list-item]
    assert [decode_result(v).seq for _, v, _ in results] == [2]
    assert [dict(hs)["evi-dlq-reason"] for _, _, hs in dlq] == [b"bad-header", b"bad-header"]


async def test_a_model_that_fails_every_frame_stops_the_worker_instead_of_dead_lettering_all(
) -> None:
    h, results, dlq, _ = handler(max_consecutive_errors=5)

    async def broken(meta: FrameMeta, jpeg: bytes) -> Result:
        raise BadFrame("infer-error", "RuntimeError: device lost")

    h.pipeline.run = broken  # type: ignore[method-assign]
    await h.handle([event(i, JPEG) for i in range(4)])  # type: ignore[misc]
    assert len(dlq) == 4  # below the bound: each could be the frame's own fault
    with pytest.raises(RuntimeError, match="5 frames in a row failed in the model"):
        await h.handle([event(i, JPEG) for i in range(4, 8)])  # type: ignore[misc]
    assert len(dlq) == 4 and results == []  # that batch is replayed, not dead-lettered


async def test_a_result_that_is_not_valid_json_is_a_dead_letter() -> None:
    h, results, dlq, _ = handler()
    run = h.pipeline.run

    async def nan_score(meta: FrameMeta, jpeg: bytes) -> Result:
        r = await run(meta, jpeg)
        if meta.seq == 1:
            return Result(r.stream, r.seq, r.ts_ms, r.processed_ms, r.kind, r.model,
                          [Detection("face", float("nan"), 0, 0, 1, 1)])  # fmt: skip
        return r

    h.pipeline.run = nan_score  # type: ignore[method-assign]
    await h.handle([event(i, JPEG) for i in range(3)])  # type: ignore[misc]
    assert [decode_result(v).seq for _, v, _ in results] == [0, 2]
    assert [dict(hs)["evi-dlq-reason"] for _, _, hs in dlq] == [b"bad-result"]


async def test_a_dead_letter_always_fits_its_topic_and_says_what_was_cut() -> None:
    limit = 64 << 10
    h, _, dlq, _ = handler(topics={"max_message_bytes": limit}, max_frame_bytes=limit - 1024)
    e = event(0, b"\xff\xd8\xff" + b"x" * (limit - 2000))  # fits the frames topic
    e.message.headers = [*e.message.headers, *((f"x-{i}", b"v" * 900) for i in range(200))]
    e.message.key = b"k" * 5000
    await h.handle([e])  # type: ignore[list-item]
    ((key, value, headers),) = dlq
    size = len(key or b"") + len(value) + sum(len(k) + len(v) for k, v in headers)
    assert size < limit - 1024
    cut = dict(headers)["evi-dlq-cut"].decode()
    assert "key of 5000 bytes cut to 256" in cut
    assert "headers dropped" in cut
    assert dict(headers)["evi-dlq-reason"] == b"bad-key"


async def test_a_dead_letter_the_broker_refuses_is_sent_again_with_why_and_where_only(
) -> None:
    from confluent_kafka import KafkaError, KafkaException

    h, _, dlq, _ = handler()
    send = h.sink.send

    async def refusing(topic: str, key: bytes | None, value: bytes, headers: Any = None
                       ) -> asyncio.Future[None]:  # fmt: skip
        fut = await send(topic, key, value, headers)
        if value:
            fut = asyncio.get_running_loop().create_future()
            fut.set_exception(KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)))
        return fut

    h.sink.send = refusing  # type: ignore[method-assign]
    h.letters.sink = h.sink
    deliveries = await h.handle([event(0, b"GIF89a")])  # type: ignore[list-item]
    for d in deliveries:
        await d  # settles: the minimal record went out instead
    assert [(k, v) for k, v, _ in dlq] == [(b"cam1", b"GIF89a"), (None, b"")]
    minimal = dict(dlq[1][2])
    assert minimal["evi-dlq-reason"] == b"not-jpeg"
    assert b"broker refused" in minimal["evi-dlq-cut"]


async def test_a_batch_goes_to_the_sink_in_one_go_after_its_last_frame() -> None:
    """One produce request per batch, not a trickle as frames finish (docs/benchmarks.md)."""
    h, results, dlq, _ = handler()
    finished: list[int] = []
    seen_at_send: list[int] = []
    run = h.pipeline.run

    async def slow_last(meta: FrameMeta, jpeg: bytes) -> Result:
        await asyncio.sleep(0.05 if meta.seq == 3 else 0)
        try:
            return await run(meta, jpeg)
        finally:
            finished.append(meta.seq)

    send = h.sink.send

    async def counting_send(*args: Any, **kwargs: Any) -> asyncio.Future[None]:
        seen_at_send.append(len(finished))
        return await send(*args, **kwargs)

    h.pipeline.run = slow_last  # type: ignore[method-assign]
    h.sink.send = counting_send  # type: ignore[method-assign]
    await h.handle([event(i, CORRUPT if i == 1 else JPEG) for i in range(4)])  # type: ignore[misc]
    assert [decode_result(v).seq for _, v, _ in results] == [0, 2, 3]
    assert len(dlq) == 1
    assert seen_at_send == [4, 4, 4, 4]  # every record after all four frames were done


async def test_acker_acks_delivered_batches_in_order() -> None:
    fatal: list[BaseException] = []
    acker = Acker(lambda e, what: fatal.append(e))
    task = asyncio.ensure_future(acker.run())
    acks: list[int] = []
    loop = asyncio.get_running_loop()
    slow, fast = loop.create_future(), loop.create_future()
    await acker.submit([event(0, JPEG, acks=acks), event(1, JPEG, acks=acks)], [slow])  # type: ignore[list-item]
    await acker.submit([event(2, JPEG, acks=acks)], [fast])  # type: ignore[list-item]
    fast.set_result(None)  # the second batch is delivered first
    await asyncio.sleep(0.01)
    assert acks == []  # acking 2 before 0 and 1 would let faust commit past them (#606)
    slow.set_result(None)
    await asyncio.wait_for(acker.join(), 1)
    assert acks == [0, 1, 2] and not fatal
    task.cancel()


async def test_acker_never_acks_an_undelivered_batch_and_reports_it() -> None:
    fatal: list[BaseException] = []
    acker = Acker(lambda e, what: fatal.append(e))
    task = asyncio.ensure_future(acker.run())
    acks: list[int] = []
    failed = asyncio.get_running_loop().create_future()
    failed.set_exception(OSError("broker gone"))
    await acker.submit([event(0, JPEG, acks=acks)], [failed])  # type: ignore[list-item]
    done = asyncio.get_running_loop().create_future()
    done.set_result(None)
    await acker.submit([event(1, JPEG, acks=acks)], [done])  # type: ignore[list-item]
    await asyncio.wait_for(acker.join(), 1)
    assert acks == [] and isinstance(fatal[0], OSError)
    task.cancel()


class FakeConsumer:
    def __init__(self) -> None:
        self.acked: list[int] = []
        self.unacked: set[ConsumerMessage] = set()  # what faust's stream iterator tracks
        self._unacked_messages = self.unacked

    def ack(self, message: ConsumerMessage) -> bool:
        self.acked.append(message.offset)
        return True


def pinned_app(consumer: FakeConsumer, event: type[faust.Event] = PinnedEvent) -> faust.App:
    app = faust.App("pinned", broker="kafka://127.0.0.1:1", Event=event)
    app._consumer = consumer  # type: ignore[assignment]  # what event.ack() acks on
    return app


def frame_message(app: faust.App, offset: int) -> ConsumerMessage:
    msg = ConsumerMessage("frames", 0, offset, 0.0, 0, [], b"cam1", JPEG, None,
                          tp=TP("frames", 0), generation_id=app.consumer_generation_id)
    msg.incref()  # what faust's conductor does when it hands the message to our stream
    return msg


def test_a_pinned_event_needs_our_ack_as_well_as_take_events() -> None:
    consumer = FakeConsumer()
    app = pinned_app(consumer)
    e = app.create_event(b"cam1", JPEG, [], frame_message(app, 7))
    assert isinstance(e, PinnedEvent)
    handed([e])
    e.ack()  # take_events' finally (also when the batch failed)
    assert consumer.acked == [] and not e.message.acked
    e.ack()  # the Acker, once the results are delivered
    assert consumer.acked == [7]  # consumer.ack marks it committable


@pytest.mark.parametrize("pinned", [False, True])
async def test_the_python_stream_acks_what_it_skips_at_a_rebalance_unless_pinned(
    pinned: bool,
) -> None:
    """faust's pure-Python stream iterator skips an event it reads while flow control is
    suspended and acks it unseen; the compiled iterator skips without an ack. A PinnedEvent is
    not committable either way (processors/handler.py)."""
    consumer = FakeConsumer()
    app = pinned_app(consumer, PinnedEvent if pinned else faust.Event)
    skips = metrics.SKIPPED_BY_FAUST.labels("frames")
    before = skips._value.get()
    for compiled in (False, True):
        consumer.acked.clear()
        chan = app.channel()
        stream = chan.stream()
        app.flow_control.resume()  # a running worker
        it = stream.__aiter__() if compiled else stream._py_aiter()  # type: ignore[attr-defined]
        step = asyncio.ensure_future(it.__anext__())
        await asyncio.sleep(0.05)  # the stream waits on an empty queue
        msg = frame_message(app, 5 + compiled)
        for subscriber in chan._subscribers:  # type: ignore[attr-defined]
            subscriber.queue.put_nowait(app.create_event(b"cam1", JPEG, [], msg))
        app.flow_control.suspend()  # a rebalance begins before the stream task runs again
        await asyncio.sleep(0.1)
        assert not step.done()  # skipped: nothing reached the agent
        step.cancel()
        expected = [] if pinned or compiled else [5]
        assert consumer.acked == expected, (pinned, compiled)
    assert skips._value.get() - before == (1 if pinned else 0)  # counted where it was acked
