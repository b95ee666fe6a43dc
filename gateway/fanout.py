"""The gateway's fan-out: Kafka records in (from the feed thread), websocket messages out.

Runs on the event loop. Each result is paired with its frame (the producer's JPEG, untouched)
and put in the bounded queue of every subscriber of its stream; results of a stream keep their
order, duplicates (at-least-once replays) are dropped, and streams without recent results have
their frames sent alone so the video still shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from confluent_kafka import KafkaError, Message
from prometheus_client import Counter

from evi.errors import BadFrame
from evi.topics import Topics
from evi.wire import BadResult, Result, StreamInfo, decode_result, decode_stream_info, parse_frame
from gateway.feed import Feed
from gateway.monitor import Monitor
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
from gateway.stats import StreamStats
from gateway.subscribers import Subscribers

log = logging.getLogger("evi.gateway")

RECORDS = Counter("evi_gateway_records_total", "Kafka records read", ["type"])
BAD_RECORDS = Counter(
    "evi_gateway_bad_records_total", "Records the gateway could not read", ["topic"]
)
UNPAIRED = Counter("evi_gateway_unpaired_results_total", "Results sent without their frame")

MAX_BATCHES_IN_FLIGHT = 8  # the feed thread waits when the loop is this far behind
IDLE_CACHE_S = 30.0  # frames kept for a stream that sends no more are let go after this


class Fanout:
    def __init__(self, s: GatewaySettings) -> None:
        self.s = s
        self.topics = Topics(s.topics)
        self.registry: dict[str, StreamInfo] = {}
        self.stats: dict[str, StreamStats] = {}
        self.subscribers = Subscribers(s.client_queue)
        self.frames_by_kind: dict[str, int] = {}
        self.results_by_kind: dict[str, dict[str, int]] = {}  # kind -> model -> results
        self.started = time.time()
        self._frames: dict[str, OrderedDict[int, tuple[int, bytes]]] = {}  # seq -> (ts, jpeg)
        self._newest_ts: dict[str, int] = {}
        self._frame_at: dict[str, float] = {}  # monotonic time of each stream's last frame
        self._next_sweep = 0.0
        self._pending: dict[str, deque[tuple[float, Result]]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._in_flight = threading.Semaphore(MAX_BATCHES_IN_FLIGHT)
        self._chunk = max(1, min(64, s.client_queue // 2))
        self._budget = self._chunk  # messages this loop step may still publish
        self._flush_scheduled = False
        self._stopping = threading.Event()
        self.assigned = asyncio.Event()
        self.feed = Feed(s, self._batch_from_thread, self._idle_from_thread, self._assigned)
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

    @property
    def kafka_ok(self) -> bool:
        return self.monitor.kafka_ok

    @property
    def ready(self) -> bool:
        return self.assigned.is_set() and self.monitor.kafka_ok

    # --- from the feed thread ----------------------------------------------------------------
    def _call(self, fn: Callable[..., object], *args: object) -> None:
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # loop closed: we are shutting down
            self._loop.call_soon_threadsafe(fn, *args)

    def _batch_from_thread(self, batch: list[Message]) -> None:
        while not self._in_flight.acquire(timeout=0.5):
            if self._stopping.is_set():
                return
        self._call(self._dispatch, batch)

    def _idle_from_thread(self) -> None:
        self._call(self._flush_step)

    def _assigned(self) -> None:
        self._call(self.assigned.set)

    # --- event loop ---------------------------------------------------------------------------
    def _counters(self) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
        return self.frames_by_kind, self.results_by_kind

    def _on_kafka_status(self, ok: bool) -> None:
        self.subscribers.broadcast(status_message(ok))

    def _dispatch(self, batch: list[Message], start: int = 0) -> None:
        """Handle a batch; after every `_chunk` messages published, yield to the websocket
        writers (the rest is scheduled again), so a burst does not overflow the queues of
        clients that keep up."""
        self._budget = self._chunk
        frames_head = f"{self.topics.prefix}.frames."
        results_head = f"{self.topics.prefix}.results."
        i = start
        while i < len(batch) and self._budget > 0:
            m = batch[i]
            i += 1
            err = m.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("gateway consumer: %s", err)
                continue
            topic = m.topic() or ""
            if topic.startswith(frames_head):
                self._on_frame(m, topic, topic[len(frames_head) :])
            elif topic.startswith(results_head):
                self._on_result(m, topic[len(results_head) :])
            elif topic == self.topics.streams:
                self._on_registry(m)
        if i < len(batch):
            asyncio.get_running_loop().call_soon(self._dispatch, batch, i)
            return
        self._in_flight.release()
        self._flush_all()

    def _publish(self, stream: str, message: bytes) -> None:
        if self.subscribers.publish(stream, message):
            self._budget -= 1

    def _on_registry(self, m: Message) -> None:
        RECORDS.labels("registry").inc()
        key, value = m.key(), m.value()
        if key is None:
            return
        if value is None:  # tombstone: the stream was removed
            stream = key.decode(errors="replace")
            self.registry.pop(stream, None)
            self.stats.pop(stream, None)
            self._frames.pop(stream, None)
            self._newest_ts.pop(stream, None)
            self._frame_at.pop(stream, None)
            self._publish(stream, removed_message(stream))
            return
        try:
            info = decode_stream_info(value)
        except BadResult as e:
            BAD_RECORDS.labels(m.topic()).inc()
            log.warning("bad registry record key=%r: %s", key[:64], e)
            return
        self.registry[info.stream] = info
        self._publish(info.stream, stream_message(info))

    def _on_frame(self, m: Message, topic: str, kind: str) -> None:
        RECORDS.labels("frame").inc()
        value = m.value()
        try:
            meta = parse_frame(m.key(), value, m.headers(), self.s.topics.max_message_bytes)
        except BadFrame:
            BAD_RECORDS.labels(topic).inc()
            return
        assert value is not None
        self.frames_by_kind[kind] = self.frames_by_kind.get(kind, 0) + 1
        stream = meta.stream
        st = self._stats(stream)
        fresh = st.on_frame(topic, meta)
        cache = self._frames.setdefault(stream, OrderedDict())
        self._frame_at[stream] = time.monotonic()
        held = cache.get(meta.seq)
        if held is None or held[0] != meta.ts_ms:
            cache.pop(meta.seq, None)
            cache[meta.seq] = (meta.ts_ms, value)
            self._newest_ts[stream] = max(self._newest_ts.get(stream, 0), meta.ts_ms)
            while len(cache) > self.s.frame_cache:
                cache.popitem(last=False)
        if stream in self._pending:
            self._flush(stream, time.monotonic())
        alone_after = self.s.frames_alone_after_ms / 1000
        if (
            fresh and alone_after
            and time.monotonic() - st.last_result_mono > alone_after
            and self.subscribers.wanted(stream)
        ):
            self._publish(stream, pack_message(frame_header(meta), value))

    def _on_result(self, m: Message, kind: str) -> None:
        RECORDS.labels("result").inc()
        try:
            r = decode_result(m.value() or b"")
        except BadResult as e:
            BAD_RECORDS.labels(m.topic()).inc()
            log.warning("bad result record on %s: %s", m.topic(), e)
            return
        by_model = self.results_by_kind.setdefault(kind, {})
        by_model[r.model] = by_model.get(r.model, 0) + 1
        if not self._stats(r.stream).on_result(r):
            return  # a duplicate of a result already sent
        self._pending.setdefault(r.stream, deque()).append((time.monotonic(), r))
        self._flush(r.stream, time.monotonic())

    def _flush(self, stream: str, now: float) -> None:
        """Send a stream's waiting results, in order, as their frames arrive or their wait ends."""
        queue = self._pending[stream]
        cache = self._frames.get(stream)
        wait = self.s.pair_wait_ms / 1000
        while queue:
            if self._budget <= 0:  # let the writers run first; the rest goes out next step
                self._flush_soon()
                return
            t, r = queue[0]
            held = cache.get(r.seq) if cache is not None else None
            if held is not None and held[0] == r.ts_ms:
                jpeg = held[1]
            elif now - t < wait and self._newest_ts.get(stream, 0) <= r.ts_ms:
                return  # its frame may still come (no newer frame has been seen)
            else:
                jpeg = b""
                UNPAIRED.inc()
            queue.popleft()
            if self.subscribers.wanted(stream):
                self._publish(stream, pack_message(result_header(r, bool(jpeg)), jpeg))
        del self._pending[stream]

    def _flush_all(self) -> None:
        if self._pending:
            now = time.monotonic()
            for stream in list(self._pending):
                self._flush(stream, now)

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
        """Let go of the cached frames of streams that stopped sending (ended, or renamed)."""
        now = time.monotonic()
        if now < self._next_sweep:
            return
        self._next_sweep = now + 5.0
        for stream, at in list(self._frame_at.items()):
            if now - at > IDLE_CACHE_S and stream not in self._pending:
                del self._frame_at[stream]
                self._frames.pop(stream, None)
                self._newest_ts.pop(stream, None)

    def _stats(self, stream: str) -> StreamStats:
        st = self.stats.get(stream)
        if st is None:
            st = self.stats[stream] = StreamStats()
        return st

    def kinds(self) -> list[str]:
        return list(self.monitor.kinds)
