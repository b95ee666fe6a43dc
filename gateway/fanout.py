"""The gateway's fan-out: Kafka records in (from the feed thread), websocket messages out.

Runs on the event loop; the pieces each have a module: batches come over from the feed thread
in gateway/handover.py, results wait for their frames in gateway/pairing.py, messages reach
their stream's viewers in gateway/subscribers.py, and streams whose results lag behind (or that
have none) have their newest frames sent alone, rate-limited (gateway/pictures.py). This module
routes each record to them, and owns their lifecycle.

No record can stop it: each one is handled on its own, what cannot be read or raises is counted
(gateway/intake.py) and the rest of the batch goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from confluent_kafka import KafkaError, Message
from prometheus_client import Counter

from evi.topics import Topics
from gateway import intake
from gateway.feed import Feed
from gateway.handover import Handover
from gateway.health import FeedHealth
from gateway.intake import BAD_RECORDS, RECORDS, Bad, RateLimitedLog
from gateway.monitor import Monitor
from gateway.pairing import Pairing
from gateway.pictures import AloneFrames
from gateway.protocol import (
    frame_header,
    pack_message,
    removed_message,
    status_message,
    stream_message,
)
from gateway.protocol import unpack_message as unpack_message
from gateway.settings import GatewaySettings
from gateway.streams import KindCounts, Registry, Streams, StreamState
from gateway.subscribers import Subscribers

FRAMES, RESULTS, REGISTRY = (RECORDS.labels(t) for t in ("frame", "result", "registry"))
REFUSED = Counter(
    "evi_gateway_models_refused_total", "Results of a model past max_models on their stream"
)


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
        self.handover = Handover(self._handle, self._flush_all, self.health,
                                 max(1, min(64, s.client_queue // 2)))
        self.pairing = Pairing(s, self.streams, self.subscribers, self.alone, self._publish,
                               self._room, self._flush_soon)
        self._flush_scheduled = False
        self._log = RateLimitedLog()
        self._frames_head = f"{self.topics.prefix}.frames."
        self._results_head = f"{self.topics.prefix}.results."
        self.assigned = asyncio.Event()
        self.feed = Feed(s, self.handover.from_thread, self._idle_from_thread, self._assigned,
                         self.health)
        self.monitor = Monitor(s, self._counters, self._on_kafka_status)
        self._monitor_task: asyncio.Task[None] | None = None

    # --- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        self.handover.loop = asyncio.get_running_loop()
        self.feed.start()
        self._monitor_task = asyncio.create_task(self.monitor.run(), name="kafka-monitor")

    async def stop(self) -> None:
        self.handover.stopping.set()
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
    def _idle_from_thread(self) -> None:
        self.handover.call(self._flush_step)

    def _assigned(self) -> None:
        self.handover.call(self.assigned.set)

    # --- event loop ---------------------------------------------------------------------------
    def _counters(self) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
        return self.counts.frames, self.counts.results

    def _on_kafka_status(self, ok: bool) -> None:
        self.subscribers.broadcast(status_message(ok))

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
            self.handover.published()

    def _room(self) -> bool:
        return self.handover.budget > 0

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
            self.pairing.keep_frame(stream, st, meta.seq, meta.ts_ms, value)
        if st.pending:
            self.pairing.flush(stream, st, now)
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
        self.pairing.add(r.stream, st, r, now)

    def _flush_all(self) -> None:
        self.pairing.flush_all(self._results_head + "*")

    def _flush_soon(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_step)

    def _flush_step(self) -> None:
        self._flush_scheduled = False
        self.handover.budget = self.handover.chunk
        self._flush_all()
        self.pairing.sweep()

    def _evicted(self, stream: str, st: StreamState) -> None:
        self.pairing.evicted(stream, st)

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
