"""The gateway's fan-out: Kafka records in (from the feed thread), websocket messages out.

Runs on the event loop. Each result is paired with its frame (the producer's JPEG, untouched)
and put in the bounded queue of every subscriber of its stream; results of a stream keep their
order, duplicates (at-least-once replays) are dropped, and streams whose results lag behind
(or that have none) have their newest frames sent alone, rate-limited, so a tile always shows
the newest picture (gateway/pictures.py).

No record can stop it: each one is handled on its own, what cannot be read or raises is counted
(gateway/intake.py) and the rest of the batch goes on; the batch's in-flight slot is given back
whatever happens, so the feed thread never waits for good.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable

from confluent_kafka import KafkaError, Message
from prometheus_client import Counter

from evi.topics import Topics
from evi.wire import Result
from gateway import intake
from gateway.feed import Feed
from gateway.health import FeedHealth
from gateway.intake import BAD_RECORDS, RECORDS, Bad, RateLimitedLog
from gateway.monitor import Monitor
from gateway.pictures import AloneFrames
from gateway.protocol import (
    frame_header,
    pack_message,
    removed_message,
    result_header,
    status_message,
    stream_message,
)
from gateway.protocol import unpack_message as unpack_message
from gateway.settings import GatewaySettings
from gateway.streams import KindCounts, Registry, Streams, StreamState
from gateway.subscribers import Subscribers

FRAMES, RESULTS, REGISTRY = (RECORDS.labels(t) for t in ("frame", "result", "registry"))
UNPAIRED = Counter("evi_gateway_unpaired_results_total", "Results sent without their frame")
REFUSED = Counter(
    "evi_gateway_models_refused_total", "Results of a model past max_models on their stream"
)

MAX_BATCHES_IN_FLIGHT = 8  # the feed thread waits when the loop is this far behind
RECORDS_PER_STEP = 256  # then the loop serves HTTP and websockets before it goes on
IDLE_CACHE_S = 30.0  # frames kept for a stream that sends no more are let go after this
SWEEP_EVERY_S = 5.0


class Fanout:
    def __init__(self, s: GatewaySettings) -> None:
        self.s = s
        self.topics = Topics(s.topics)
        self.registry = Registry(s.max_registry)
        self.streams = Streams(s.max_streams, s.stream_idle_s, s.dedup_window, s.max_models,
                               self._evicted)
        self.counts = KindCounts(s.max_models)
        self.subscribers = Subscribers(s.client_queue, self._client_dropped)
        self.alone = AloneFrames(s.frames_alone_after_ms, s.frames_alone_fps)
        self.started = time.time()
        self.health = FeedHealth(s.feed_stall_s)
        self._cached: set[str] = set()  # streams with frames in their cache
        self._pending: set[str] = set()  # streams with results waiting for their frames
        self._next_sweep = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._in_flight = threading.Semaphore(MAX_BATCHES_IN_FLIGHT)
        self._chunk = max(1, min(64, s.client_queue // 2))
        self._budget = self._chunk  # messages this loop step may still publish
        self._flush_scheduled = False
        self._batches: deque[list[Message]] = deque()  # handed over, not finished; oldest first
        self._pos = 0  # records of the oldest batch already handled
        self._dispatching = False  # a _dispatch step is scheduled
        self._stopping = threading.Event()
        self._log = RateLimitedLog()
        self._frames_head = f"{self.topics.prefix}.frames."
        self._results_head = f"{self.topics.prefix}.results."
        self.assigned = asyncio.Event()
        self.feed = Feed(s, self._batch_from_thread, self._idle_from_thread, self._assigned,
                         self.health)
        self.monitor = Monitor(s, self._counters, self._on_kafka_status)
        self._monitor_task: asyncio.Task[None] | None = None

    # --- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.feed.start()
        self._monitor_task = asyncio.create_task(self.monitor.run(), name="kafka-monitor")

    async def stop(self) -> None:
        self._stopping.set()
        for sub in list(self.subscribers.all.values()):
            sub.close()
        if self._monitor_task:
            self._monitor_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor_task
        await asyncio.to_thread(self.feed.stop)

    def not_ready(self) -> str:
        """Why /readyz fails; "" when ready."""
        if not self.monitor.kafka_ok:
            return "waiting for kafka"
        if not self.assigned.is_set():
            return "assigning partitions"
        return self.health.problem(self.feed.alive())

    # --- from the feed thread ----------------------------------------------------------------
    def _call(self, fn: Callable[..., object], *args: object) -> bool:
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # loop closed: we are shutting down
            return False
        return True

    def _batch_from_thread(self, batch: list[Message]) -> None:
        self.health.handed()
        while not self._in_flight.acquire(timeout=0.5):
            if self._stopping.is_set():
                self.health.done()
                return
        if not self._call(self._take, batch):
            self._in_flight.release()
            self.health.done()

    def _later(self, fn: Callable[..., object], *args: object) -> bool:
        """On the loop: run fn in a later step (False if the loop is closing)."""
        try:
            asyncio.get_running_loop().call_soon(fn, *args)
        except RuntimeError:
            return False
        return True

    def _idle_from_thread(self) -> None:
        self._call(self._flush_step)

    def _assigned(self) -> None:
        self._call(self.assigned.set)

    # --- event loop ---------------------------------------------------------------------------
    def _counters(self) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
        return self.counts.frames, self.counts.results

    def _on_kafka_status(self, ok: bool) -> None:
        self.subscribers.broadcast(status_message(ok))

    def _take(self, batch: list[Message]) -> None:
        """A batch from the feed thread: queued behind those not finished, so records are
        handled in the order Kafka gave them even when a batch takes several loop steps."""
        self._batches.append(batch)
        if not self._dispatching:
            self._dispatch()

    def _dispatch(self) -> None:
        """Handle queued batches; after every `_chunk` messages published (or RECORDS_PER_STEP
        records), yield to the websocket writers and HTTP (the rest is scheduled again), so a
        burst does not overflow the queues of clients that keep up nor starve the loop."""
        self._dispatching = False
        self._budget = self._chunk
        self.health.stepped()
        end = self._pos + RECORDS_PER_STEP  # records nobody wants publish nothing: bound them
        while self._batches and self._budget > 0 and self._pos < end:
            batch = self._batches[0]
            i = self._pos
            try:
                while i < len(batch) and self._budget > 0 and i < end:
                    i += 1
                    self._handle(batch[i - 1])
            finally:  # whatever happened, a finished batch gives its in-flight slot back
                self._pos = i
                if i >= len(batch):
                    self._batches.popleft()
                    end -= i
                    self._pos = 0
                    self._in_flight.release()
                    self.health.done()
        if self._batches:
            self._dispatching = self._later(self._dispatch)
        else:
            self._flush_all()

    def _handle(self, m: Message) -> None:
        """One record: used, or counted and skipped — whatever it holds."""
        topic = "?"
        try:
            err = m.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    self._log.warning("consumer", "gateway consumer: %s", err)
                return
            topic = m.topic() or ""
            if topic.startswith(self._frames_head):
                self._on_frame(m, topic, topic[len(self._frames_head) :])
            elif topic.startswith(self._results_head):
                self._on_result(m, topic[len(self._results_head) :])
            elif topic == self.topics.streams:
                self._on_registry(m)
        except Bad as e:
            BAD_RECORDS.labels(topic, e.reason).inc()
            self._log.warning(e.reason, "bad record on %s (%s): %s", topic, e.reason, e)
        except Exception as e:  # a bug must cost one record, not the feed
            BAD_RECORDS.labels(topic, intake.ERROR).inc()
            self._log.warning(intake.ERROR, "record on %s raised %r; skipped", topic, e, exc=True)

    def _publish(self, stream: str, message: bytes, latest: bool = False) -> None:
        if self.subscribers.publish(stream, message, latest):
            self._budget -= 1

    def _on_registry(self, m: Message) -> None:
        REGISTRY.inc()
        stream, info = intake.registry(m)
        if info is None:  # tombstone: the stream was removed
            self.registry.pop(stream)
            self._forget(stream)
            self._publish(stream, removed_message(stream))
            return
        self.registry.put(info)
        self._publish(info.stream, stream_message(info))

    def _on_frame(self, m: Message, topic: str, kind: str) -> None:
        FRAMES.inc()
        meta, value = intake.frame(m, self.s.topics.max_message_bytes)
        self.counts.frame(kind)
        stream = meta.stream
        now = time.monotonic()
        st = self.streams.touch(stream, now)
        fresh = st.stats.on_frame(topic, meta)
        st.newest_ts = max(st.newest_ts, meta.ts_ms)
        wanted = self.subscribers.wanted(stream)
        if wanted:  # frames are kept only to pair with results someone will be sent
            held = st.frames.get(meta.seq)
            if held is None or held[0] != meta.ts_ms:
                st.frames.pop(meta.seq, None)
                st.frames[meta.seq] = (meta.ts_ms, value)
                while len(st.frames) > self.s.frame_cache:
                    st.frames.popitem(last=False)
                self._cached.add(stream)
        if st.pending:
            self._flush(stream, st, now)
        if fresh and wanted and self.alone.due(st.pictures, meta.ts_ms, now):
            self._publish(stream, pack_message(frame_header(meta), value), latest=True)

    def _on_result(self, m: Message, kind: str) -> None:
        RESULTS.inc()
        r = intake.result(m)
        self.counts.result(kind, r.model)
        now = time.monotonic()
        st = self.streams.touch(r.stream, now)
        model = st.stats.model(r)
        if model is None:
            REFUSED.inc()
            return
        if not st.stats.on_result(model, r):
            return  # a duplicate of a result already sent
        if not st.pending and not self.subscribers.wanted(r.stream):
            return  # counted; nobody to send it to
        st.pending.append((now, r))
        self._pending.add(r.stream)
        self._flush(r.stream, st, now)

    def _flush(self, stream: str, st: StreamState, now: float) -> None:
        """Send a stream's waiting results, in order, as their frames arrive or their wait ends."""
        queue = st.pending
        wait = self.s.pair_wait_ms / 1000
        while queue:
            if self._budget <= 0:  # let the writers run first; the rest goes out next step
                self._flush_soon()
                return
            t, r = queue[0]
            held = st.frames.get(r.seq)
            if held is not None and held[0] == r.ts_ms:
                jpeg = held[1]
            elif now - t < wait and st.newest_ts <= r.ts_ms:
                return  # its frame may still come (no newer frame has been seen)
            else:
                jpeg = b""
                UNPAIRED.inc()
            queue.popleft()
            self._send_result(stream, st, r, jpeg)
        self._pending.discard(stream)

    def _send_result(self, stream: str, st: StreamState, r: Result, jpeg: bytes) -> None:
        if self.subscribers.wanted(stream):
            self._publish(stream, pack_message(result_header(r, bool(jpeg)), jpeg))
            if jpeg:
                self.alone.paired(st.pictures, r.ts_ms)

    def _flush_all(self) -> None:
        now = time.monotonic()
        for stream in list(self._pending):
            st = self.streams.get(stream)
            if st is None:
                self._pending.discard(stream)
                continue
            try:
                self._flush(stream, st, now)
            except Exception as e:  # a bug: lose this stream's waiting results, not the loop
                st.pending.clear()
                self._pending.discard(stream)
                BAD_RECORDS.labels(self._results_head + "*", intake.ERROR).inc()
                self._log.warning("flush", "flushing stream=%s raised %r", stream, e, exc=True)

    def _flush_soon(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_step)

    def _flush_step(self) -> None:
        self._flush_scheduled = False
        self._budget = self._chunk
        self._flush_all()
        self._sweep()

    def _sweep(self) -> None:
        """Let go of idle streams, and of cached frames nobody will be sent."""
        now = time.monotonic()
        if now < self._next_sweep:
            return
        self._next_sweep = now + SWEEP_EVERY_S
        self.streams.sweep(now)
        for stream in list(self._cached):
            st = self.streams.get(stream)
            if st is None:
                self._cached.discard(stream)
            elif not st.pending and (
                now - st.seen > IDLE_CACHE_S or not self.subscribers.wanted(stream)
            ):
                st.frames.clear()
                self._cached.discard(stream)

    def _evicted(self, stream: str, st: StreamState) -> None:
        """A stream let go (idle, or past max_streams): its waiting results leave unpaired."""
        while st.pending:
            _, r = st.pending.popleft()
            held = st.frames.get(r.seq)
            jpeg = held[1] if held is not None and held[0] == r.ts_ms else b""
            if not jpeg:
                UNPAIRED.inc()
            self._send_result(stream, st, r, jpeg)
        self._pending.discard(stream)
        self._cached.discard(stream)

    def _forget(self, stream: str) -> None:
        st = self.streams.remove(stream)
        if st is not None:
            self._evicted(stream, st)

    def _client_dropped(self, stream: str) -> None:
        st = self.streams.get(stream)
        if st is not None:
            st.stats.client_drops += 1

    def kinds(self) -> list[str]:
        return list(self.monitor.kinds)
