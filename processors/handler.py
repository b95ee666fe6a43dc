"""One micro-batch of frame events → results and dead letters, in order; acks only after delivery.

At-least-once rests on when a message is acked (faust commits acked offsets, contiguous from the
last commit, after flushing its producer). A message is acked when its last reference is dropped,
and faust drops references where we must not let it:
- the taker (processors/take.py, as faust's `take_events`) acks a batch in a `finally` around its
  `yield`, so also a batch whose handling raised or was cancelled (when the generator is closed);
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
from typing import Any

import faust
from faust.types import EventT

from evi.errors import BadFrame
from evi.topics import Topics
from evi.wire import H_TS, MAX_TS_MS, FrameMeta, Result, encode_result, parse_frame
from processors import metrics
from processors.deadletter import DeadLetters, Sender, where
from processors.fairness import Candidate, StalePolicy
from processors.pipeline import FramePipeline, Outcome
from processors.quarantine import Flight
from processors.settings import ProcessorSettings
from processors.watchdog import Watchdog

log = logging.getLogger("evi.processor")

Deliveries = list[Awaitable[Any]]
Progress = Callable[[int, int, int], None]  # partition, offset, capture ts (ms)


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
                     where(self))  # fmt: skip
        return super().ack()


def handed(events: Sequence[EventT[Any]]) -> None:
    """The agent has these events: from now on an ack is the taker's or the Acker's."""
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
                at = where(events[0]) if events else ""
                self._on_fatal(e, f"delivery failed for a batch at {at}")
            finally:
                self._queue.task_done()

    async def join(self) -> None:
        await self._queue.join()


@dataclass(frozen=True, slots=True)
class Share:
    """A frame's place in a running chunk of frames (FramePipeline.run_many)."""

    chunk: asyncio.Future[list[Outcome]]
    index: int


Job = Share | Outcome  # running, or already settled (quarantined, run alone)
CHUNK_MIN = 4
SYSTEMIC = frozenset({"infer-error", "postprocess-error"})  # may be the model's, not the frame's


@dataclass
class Started:
    """A batch whose frames are in the pipeline."""

    events: Sequence[EventT[Any]]
    deliveries: Deliveries = field(default_factory=list)  # dead letters sent by `start`
    captured: list[int] = field(default_factory=list)  # each event's capture time, ms
    jobs: list[tuple[EventT[Any], FrameMeta, Job]] = field(default_factory=list)


class FrameHandler:
    """One batch at a time: every frame ends as exactly one result or one dead letter, whatever
    it holds; only what is not about a frame (deliveries, in-flight writes, a broken model)
    raises, and the caller crashes the worker."""

    def __init__(
        self, s: ProcessorSettings, pipeline: FramePipeline, sink: Sender, progress: Progress,
        flight: Flight | None = None, watchdog: Watchdog | None = None,
    ) -> None:  # fmt: skip
        self.kind = s.kind
        self.model = pipeline.model_name
        self.pipeline = pipeline
        self.sink = sink
        self.flight = flight
        self.watchdog = watchdog
        topics = Topics(s.topics)
        self.results = topics.results(s.kind)
        self.letters = DeadLetters(sink, topics.dlq(s.kind), s.topics.max_message_bytes,
                                   self.kind, self.model)  # fmt: skip
        self.progress = progress
        self.limit = s.frame_limit
        self.result_limit = s.topics.max_message_bytes - 1024
        self.max_errors = s.max_consecutive_errors
        self.errors_in_a_row = 0
        drop = s.policy == "drop-stale"
        self.stale = StalePolicy(s.max_age_ms, s.stale_keep_ms) if drop else None
        self.inferred = 0
        self.dropped = 0
        # Frames per task: the model's batch, at least a few (one decode-thread job each).
        self.chunk = max(pipeline.batch, CHUNK_MIN)
        self._running: set[asyncio.Future[Any]] = set()  # each started batch's frames, gathered
        self.frames = metrics.FRAMES.labels(self.kind, self.model)
        self.stale_frames = metrics.DROPPED.labels(self.kind, self.model, "stale")
        self.suspects = metrics.SUSPECTS.labels(self.kind, self.model)
        self.quarantined = metrics.QUARANTINED.labels(self.kind, self.model)
        self.infer_seconds = metrics.INFER_SECONDS.labels(self.kind, self.model)
        self.e2e_seconds = metrics.E2E_SECONDS.labels(self.kind, self.model)
        self.batch_frames = metrics.BATCH_FRAMES.labels(self.kind, self.model)

    async def handle(self, events: Sequence[EventT[Any]]) -> Deliveries:
        """`start` then `finish`: one batch, nothing overlapping it."""
        return await self.finish(await self.start(events))

    async def start(self, events: Sequence[EventT[Any]]) -> Started:
        """Parse, dead-letter and drop what must be, run alone or quarantine what a dead worker
        left in flight, start the pipeline on every other kept frame."""
        self.batch_frames.observe(len(events))
        batch = Started(events)
        good: list[tuple[EventT[Any], FrameMeta]] = []
        for event in events:
            msg = event.message
            try:
                meta = parse_frame(msg.key, msg.value, msg.headers, self.limit)
            except Exception as e:  # BadFrame, or what no check foresaw: the record's either way
                bad = e if isinstance(e, BadFrame) else _unforeseen("record", e)
                batch.deliveries.append(await self.letters.send(event, bad))
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
        settled: dict[int, Outcome] = {}
        if self.flight is not None:
            await self.flight.ready()
            if self.flight.suspicious:
                settled = await self._left_in_flight(good)
        normal = [(e, m) for e, m in good if id(e) not in settled]
        started = await self._run(normal)
        batch.jobs = [(e, m, settled[id(e)] if id(e) in settled else started[id(e)])
                      for e, m in good]  # fmt: skip
        return batch

    async def _left_in_flight(self, good: list[tuple[EventT[Any], FrameMeta]]
                              ) -> dict[int, Outcome]:  # fmt: skip
        """Frames a dead worker had in flight: each run alone (nothing else running), or not run
        at all when a worker already died running it alone (quarantined)."""
        assert self.flight is not None
        out: dict[int, Outcome] = {}
        for event, meta in good:
            msg = event.message
            verdict = self.flight.verdict(msg.partition, msg.offset)
            if verdict is None:
                continue
            if verdict.quarantine:
                self.quarantined.inc()
                out[id(event)] = BadFrame("quarantined", "a worker died with this frame running "
                                          "alone (a crash, an abort or over the frame budget): "
                                          "not run again")  # fmt: skip
            else:
                self.suspects.inc()
                if self._running:  # alone: no other frame of this worker may be the killer
                    await asyncio.wait(set(self._running))
                frame = [(msg.partition, msg.offset)]
                await self.flight.mark(frame, alone_deaths=verdict.deaths)
                token = self.watchdog.begin(_ident(event, meta)) if self.watchdog else None
                try:
                    out[id(event)] = await self.pipeline.run(meta, msg.value or b"")
                except Exception as e:
                    out[id(event)] = e if isinstance(e, BadFrame) else _unforeseen("frame", e)
                finally:
                    if self.watchdog is not None and token is not None:
                        self.watchdog.end(token)
                await self.flight.finished_alone(msg.partition, msg.offset)
            self.flight.settled(msg.partition, msg.offset)
        return out

    async def _run(self, good: list[tuple[EventT[Any], FrameMeta]]) -> dict[int, Share]:
        """Start every frame now, `chunk` frames to a task: decode, inference and postprocess
        overlap across the batch's chunks (and with the previous batch, which `finish` may still
        be sending). A chunk is one decode-thread job and, under a backlog, one inference
        request for all its frames (FramePipeline.run_many): few Python objects per frame."""
        if not good:
            return {}
        frames = [(e.message.partition, e.message.offset) for e, _ in good]
        if self.flight is not None:
            await self.flight.mark(frames)  # in Kafka before any of them runs
        run, size = self.pipeline.run_many, self.chunk
        jobs: dict[int, Share] = {}
        chunks: list[asyncio.Future[list[Outcome]]] = []
        for at in range(0, len(good), size):
            part = good[at : at + size]
            values = [e.message.value or b"" for e, _ in part]
            chunks.append(asyncio.ensure_future(run([m for _, m in part], values)))
            chunk = chunks[-1]
            for i, (e, _) in enumerate(part):
                jobs[id(e)] = Share(chunk, i)
        token = self.watchdog.begin(_ident(*good[0], len(good))) if self.watchdog else None
        running = asyncio.gather(*chunks, return_exceptions=True)
        self._running.add(running)

        def finished(_: object) -> None:
            self._running.discard(running)
            if self.watchdog is not None and token is not None:
                self.watchdog.end(token)
            if self.flight is not None:
                self.flight.done(frames)

        running.add_done_callback(finished)
        return jobs

    async def finish(self, batch: Started) -> Deliveries:
        """Results of a started batch, sent in order; the deliveries of all its records."""
        deliveries = batch.deliveries
        outcomes: list[tuple[EventT[Any], FrameMeta, Outcome]] = []
        try:
            for event, meta, job in batch.jobs:
                if isinstance(job, Result | BadFrame):
                    outcomes.append((event, meta, job))
                    continue
                try:
                    outcomes.append((event, meta, (await job.chunk)[job.index]))
                except Exception as e:  # a bug, not about one frame alone: its frames' anyway
                    outcomes.append((event, meta, e if isinstance(e, BadFrame)
                                     else _unforeseen("frame", e)))  # fmt: skip
        finally:
            for _, _, job in batch.jobs:
                if isinstance(job, Share):
                    job.chunk.cancel()  # no-op for finished ones; a failed batch leaves none
        self._count_errors(outcomes)
        # The whole batch goes out in one go, so librdkafka puts it in one produce request:
        # results sent as each frame finished trickled into ~3 requests per partition and
        # batch, and each costs the broker about a millisecond of CPU (docs/benchmarks.md).
        # Under a backlog that holds a result back by at most one batch; at live rates
        # batches are a frame or two.
        for event, meta, out in outcomes:
            value = b""
            if isinstance(out, Result):
                try:
                    value = self._encode(out)
                except BadFrame as bad:
                    out = bad
            if isinstance(out, BadFrame):
                deliveries.append(await self.letters.send(event, out, meta))
            else:
                deliveries.append(await self.send(out, meta, value))
        for event, ts_ms in zip(batch.events, batch.captured, strict=True):  # all done
            msg = event.message
            self.progress(msg.partition, msg.offset, ts_ms)
        return deliveries

    def _count_errors(self, outcomes: list[tuple[EventT[Any], FrameMeta, Outcome]]) -> None:
        """Frames in a row whose inference or postprocess raised: past `max_consecutive_errors`
        it is the model's fault, not theirs, and the batch must be replayed, not dead-lettered."""
        for _, _, out in outcomes:
            if isinstance(out, Result):
                self.errors_in_a_row = 0
            elif out.reason in SYSTEMIC:
                self.errors_in_a_row += 1
                if self.errors_in_a_row >= self.max_errors:
                    raise RuntimeError(f"{self.errors_in_a_row} frames in a row failed in the "
                                       f"model ({out}): the model, not the frames")  # fmt: skip

    def _encode(self, result: Result) -> bytes:
        try:
            value = encode_result(result)
        except (ValueError, TypeError) as e:  # NaN/Infinity from the model: not valid JSON
            raise BadFrame("bad-result", f"result cannot be encoded: {e}") from None
        if len(value) > self.result_limit:
            raise BadFrame("bad-result", f"result is {len(value)} bytes, over the topic's limit "
                           f"({len(result.detections)} detections)")  # fmt: skip
        return value

    async def send(self, result: Result, meta: FrameMeta, value: bytes = b"") -> Awaitable[Any]:
        value = value or self._encode(result)
        fut = await self.sink.send(self.results, meta.stream.encode(), value)
        self.inferred += 1
        self.frames.inc()
        self.infer_seconds.observe(result.infer_ms / 1000)
        self.e2e_seconds.observe(max(0.0, (result.processed_ms - meta.ts_ms) / 1000))
        return fut

    async def dead_letter(
        self, event: EventT[Any], bad: BadFrame, meta: FrameMeta | None = None
    ) -> Awaitable[Any]:
        return await self.letters.send(event, bad, meta)


def _unforeseen(stage: str, e: BaseException) -> BadFrame:
    """An exception no check foresaw, raised while handling one frame: still that frame's."""
    return BadFrame(f"{stage}-error", f"{type(e).__name__}: {e}"[:500])


def _capture_ms(event: EventT[Any]) -> int:
    """The frame's capture time; the record's timestamp for a frame without a readable one."""
    headers = event.message.headers
    for name, value in headers.items() if isinstance(headers, Mapping) else headers or ():
        if name == H_TS:
            raw = value.encode() if isinstance(value, str) else value
            if isinstance(raw, bytes) and 0 < len(raw) <= 15 and raw.isdigit():
                return min(int(raw), MAX_TS_MS)
            break
    return int(event.message.timestamp * 1000)


def _ident(event: EventT[Any], meta: FrameMeta, frames: int = 1) -> str:
    more = f" (+{frames - 1} frames)" if frames > 1 else ""
    return f"stream={meta.stream} seq={meta.seq} {where(event)}{more}"
