"""One micro-batch of frame events → results and dead letters, in order; acks only after delivery.

At-least-once rests on when a message is acked (faust commits acked offsets, contiguous from the
last commit, after flushing its producer). A message is acked when its last reference is dropped,
and faust drops references where we must not let it:
- `take_events` acks a batch in a `finally` around its `yield`, so also a batch whose handling
  raised or was cancelled (when the generator is closed);
- faust's pure-Python stream iterator acks, unseen, every event it reads while flow control is
  suspended (a rebalance or a stop has begun) or that was fetched in an older consumer generation
  (faust/streams.py `_py_aiter`, "skipped_value"); the compiled one, used when faust's Cython
  extension is installed, skips without acking. Once acked, the next commit passes the frame.
So every event carries one more reference from birth (`PinnedEvent`, faust's `Event` setting), and
only `Acker` drops it, batch after batch in offset order, once the batch's results and dead letters
are delivered (acks=all). A frame faust skipped, or a batch that failed or was cut short, stays
pinned: never committed, replayed by the next owner of the partition. In order matters: faust's
gap check commits past an unacked offset when later ones are acked (faust-streaming#606,
docs/processors.md). Where a skipped frame is read again from: processors/seek.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import faust
from faust.types import EventT

from evi.errors import BadFrame
from evi.topics import Topics
from evi.wire import H_TS, FrameMeta, Result, dead_letter_headers, encode_result, parse_frame
from processors import metrics
from processors.fairness import Candidate, StalePolicy
from processors.pipeline import FramePipeline
from processors.settings import ProcessorSettings

log = logging.getLogger("evi.processor")

Deliveries = list[Awaitable[Any]]
Progress = Callable[[int, int, int], None]  # partition, offset, capture ts (ms)


class Sender(Protocol):
    """processors.sink.Sink, or a stand-in in tests."""

    async def send(
        self, topic: str, key: bytes | None, value: bytes,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> asyncio.Future[None]: ...  # fmt: skip


class PinnedEvent(faust.Event):
    """faust's Event with our reference on its message (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.message.incref()
        self.handed = False  # set when the agent takes the event in a batch

    def ack(self) -> bool:
        if not self.handed:  # faust skips it at a rebalance or stop; the pin keeps it uncommitted
            metrics.SKIPPED_BY_FAUST.labels(self.message.topic).inc()
            log.info("faust skipped %s at a rebalance or stop: left uncommitted, to be replayed",
                     _where(self))  # fmt: skip
        return super().ack()


def handed(events: Sequence[EventT[Any]]) -> None:
    """The agent has these events: from now on an ack is take_events' or the Acker's."""
    for event in events:
        if isinstance(event, PinnedEvent):
            event.handed = True


class Acker:
    """Drops the pins of delivered batches, in batch order; a failed delivery is fatal."""

    def __init__(self, on_fatal: Callable[[BaseException, str], None], depth: int = 4) -> None:
        self._queue: asyncio.Queue[tuple[Sequence[EventT[Any]], Deliveries]] = asyncio.Queue(depth)
        self._on_fatal = on_fatal
        self._failed = False

    async def submit(self, events: Sequence[EventT[Any]], deliveries: Deliveries) -> None:
        await self._queue.put((events, deliveries))  # blocks the agent while `depth` wait

    async def run(self) -> None:
        while True:
            events, deliveries = await self._queue.get()
            try:
                if not self._failed:
                    for delivery in deliveries:  # in order; cheaper than gather's callbacks
                        await delivery
                    for event in events:
                        event.ack()
            except Exception as e:  # a result we cannot deliver must not be committed past
                self._failed = True
                where = _where(events[0]) if events else ""
                self._on_fatal(e, f"delivery failed for a batch at {where}")
            finally:
                self._queue.task_done()

    async def join(self) -> None:
        await self._queue.join()


@dataclass
class Started:
    """A batch whose frames are in the pipeline."""

    events: Sequence[EventT[Any]]
    deliveries: Deliveries = field(default_factory=list)  # dead letters sent by `start`
    captured: list[int] = field(default_factory=list)  # each event's capture time, ms
    jobs: list[tuple[EventT[Any], FrameMeta, asyncio.Future[Result]]] = field(
        default_factory=list
    )


class FrameHandler:
    def __init__(
        self, s: ProcessorSettings, pipeline: FramePipeline, sink: Sender, progress: Progress
    ) -> None:
        self.kind = s.kind
        self.model = pipeline.model_name
        self.pipeline = pipeline
        self.sink = sink
        topics = Topics(s.topics)
        self.results = topics.results(s.kind)
        self.dlq = topics.dlq(s.kind)
        self.progress = progress
        self.limit = s.frame_limit
        self.dlq_limit = s.topics.max_message_bytes - 64 * 1024  # room for headers
        drop = s.policy == "drop-stale"
        self.stale = StalePolicy(s.max_age_ms, s.stale_keep_ms) if drop else None
        self.inferred = 0
        self.dropped = 0
        self.frames = metrics.FRAMES.labels(self.kind, self.model)
        self.stale_frames = metrics.DROPPED.labels(self.kind, self.model, "stale")
        self.infer_seconds = metrics.INFER_SECONDS.labels(self.kind, self.model)
        self.e2e_seconds = metrics.E2E_SECONDS.labels(self.kind, self.model)
        self.batch_frames = metrics.BATCH_FRAMES.labels(self.kind, self.model)

    async def handle(self, events: Sequence[EventT[Any]]) -> Deliveries:
        """`start` then `finish`: one batch, nothing overlapping it."""
        return await self.finish(await self.start(events))

    async def start(self, events: Sequence[EventT[Any]]) -> Started:
        """Parse, dead-letter and drop what must be, start the pipeline on every kept frame.
        BadFrame never escapes; any other exception does (the caller crashes the worker)."""
        self.batch_frames.observe(len(events))
        batch = Started(events)
        good: list[tuple[EventT[Any], FrameMeta]] = []
        for event in events:
            msg = event.message
            try:
                meta = parse_frame(msg.key, msg.value, msg.headers, self.limit)
            except BadFrame as bad:
                batch.deliveries.append(await self.dead_letter(event, bad))
                batch.captured.append(_capture_ms(event))
                continue
            good.append((event, meta))
            batch.captured.append(meta.ts_ms)
        if self.stale is not None and good:
            now_ms = int(time.time() * 1000)
            keep = self.stale.plan([Candidate(m.stream, m.ts_ms) for _, m in good], now_ms)
            dropped = sum(1 for k in keep if not k)
            self.dropped += dropped
            self.stale_frames.inc(dropped)
            good = [g for g, k in zip(good, keep, strict=True) if k]
        # Start every kept frame now: decode, inference and postprocess overlap across the batch
        # (and with the previous batch, which `finish` may still be sending).
        run = self.pipeline.run
        batch.jobs = [
            (event, meta, asyncio.ensure_future(run(meta, event.message.value or b"")))
            for event, meta in good
        ]
        return batch

    async def finish(self, batch: Started) -> Deliveries:
        """Results of a started batch, sent in order; the deliveries of all its records."""
        deliveries = batch.deliveries
        outcomes: list[tuple[EventT[Any], FrameMeta, Result | BadFrame]] = []
        try:
            for event, meta, job in batch.jobs:
                try:
                    outcomes.append((event, meta, await job))
                except BadFrame as bad:
                    outcomes.append((event, meta, bad))
        finally:
            for _, _, job in batch.jobs:
                job.cancel()  # no-op for finished ones; a failed batch leaves nothing running
        # The whole batch goes out in one go, so librdkafka puts it in one produce request:
        # results sent as each frame finished trickled into ~3 requests per partition and
        # batch, and each costs the broker about a millisecond of CPU (docs/benchmarks.md).
        # Under a backlog that holds a result back by at most one batch; at live rates
        # batches are a frame or two.
        for event, meta, out in outcomes:
            if isinstance(out, BadFrame):
                deliveries.append(await self.dead_letter(event, out, meta))
            else:
                deliveries.append(await self.send(out, meta))
        for event, ts_ms in zip(batch.events, batch.captured, strict=True):  # all done
            msg = event.message
            self.progress(msg.partition, msg.offset, ts_ms)
        return deliveries

    async def send(self, result: Result, meta: FrameMeta) -> Awaitable[Any]:
        fut = await self.sink.send(self.results, meta.stream.encode(), encode_result(result))
        self.inferred += 1
        self.frames.inc()
        self.infer_seconds.observe(result.infer_ms / 1000)
        self.e2e_seconds.observe(max(0.0, (result.processed_ms - meta.ts_ms) / 1000))
        return fut

    async def dead_letter(
        self, event: EventT[Any], bad: BadFrame, meta: FrameMeta | None = None
    ) -> Awaitable[Any]:
        msg = event.message
        metrics.DEAD_LETTERS.labels(self.kind, self.model, bad.reason).inc()
        ident = f"stream={meta.stream} seq={meta.seq} " if meta else ""
        log.warning("dead letter %s%s: %s", ident, _where(event), bad)
        value = msg.value or b""
        if len(value) > self.dlq_limit:
            value = b""  # the reason header says it was too large; keep the DLQ writable
        headers = dead_letter_headers(
            bad.reason, bad.message, msg.topic, msg.partition, msg.offset, msg.headers
        )
        return await self.sink.send(self.dlq, msg.key, value, headers)


def _capture_ms(event: EventT[Any]) -> int:
    """The frame's capture time; the record's timestamp for a frame without a readable one."""
    headers = event.message.headers
    for name, value in headers.items() if isinstance(headers, Mapping) else headers or ():
        if name == H_TS:
            try:
                return int(value)
            except (TypeError, ValueError):
                break
    return int(event.message.timestamp * 1000)


def _where(event: EventT[Any]) -> str:
    msg = event.message
    return f"tp={msg.topic}[{msg.partition}] offset={msg.offset}"
