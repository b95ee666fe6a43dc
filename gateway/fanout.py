"""The gateway's one Kafka consumer and its fan-out to websocket clients.

One consumer per gateway process reads frames, results and the stream registry with manual
assignment (no consumer group: every replica sees every stream). A thread polls Kafka and hands
batches to the event loop; the loop pairs each result with its frame and puts the message in
every subscriber's bounded queue, dropping that subscriber's oldest message when it is full.
"""

from __future__ import annotations

import asyncio
import json
import logging
import struct
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, TopicPartition
from prometheus_client import Counter, Gauge

from evi.errors import BadFrame
from evi.topics import Topics
from evi.wire import (
    BadResult,
    FrameMeta,
    Result,
    StreamInfo,
    decode_result,
    decode_stream_info,
    parse_frame,
)
from gateway.settings import GatewaySettings
from gateway.stats import StreamStats

log = logging.getLogger("evi.gateway")

WS_SENT = Counter("evi_gateway_ws_messages_total", "Messages queued to websocket clients")
WS_DROPPED = Counter(
    "evi_gateway_ws_dropped_total", "Messages a slow websocket client lost (oldest first)"
)
WS_CLIENTS = Gauge("evi_gateway_ws_clients", "Connected websocket clients")
BAD_RECORDS = Counter(
    "evi_gateway_bad_records_total", "Records the gateway could not read", ["topic"]
)
UNPAIRED = Counter("evi_gateway_unpaired_results_total", "Results sent without their frame")

_HEADER_LEN = struct.Struct(">I")


def pack_message(header: dict[str, Any], jpeg: bytes) -> bytes:
    """Binary websocket message: u32 big-endian header length, UTF-8 JSON header, JPEG bytes."""
    head = json.dumps(header, separators=(",", ":")).encode()
    return b"".join((_HEADER_LEN.pack(len(head)), head, jpeg))


def unpack_message(data: bytes) -> tuple[dict[str, Any], bytes]:
    (n,) = _HEADER_LEN.unpack_from(data)
    return json.loads(data[4 : 4 + n]), data[4 + n :]


def result_header(r: Result, has_image: bool) -> dict[str, Any]:
    return {
        "type": "result",
        "stream": r.stream,
        "seq": r.seq,
        "ts_ms": r.ts_ms,
        "processed_ms": r.processed_ms,
        "kind": r.kind,
        "model": r.model,
        "infer_ms": round(r.infer_ms, 3),
        "width": r.width,
        "height": r.height,
        "detections": [d.to_json() for d in r.detections],
        "image": has_image,
    }


@dataclass
class Subscriber:
    streams: frozenset[str] | None  # None = every stream
    maxlen: int
    queue: deque[bytes] = field(init=False)
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    dropped: int = 0

    def __post_init__(self) -> None:
        self.queue = deque(maxlen=self.maxlen)

    def wants(self, stream: str) -> bool:
        return self.streams is None or stream in self.streams

    def offer(self, message: bytes) -> None:
        if len(self.queue) == self.maxlen:
            self.dropped += 1
            WS_DROPPED.inc()
        self.queue.append(message)  # deque(maxlen) drops the oldest
        WS_SENT.inc()
        self.wakeup.set()

    async def next(self) -> bytes:
        while not self.queue:
            self.wakeup.clear()
            await self.wakeup.wait()
        return self.queue.popleft()


class Fanout:
    def __init__(self, s: GatewaySettings) -> None:
        self.s = s
        self.topics = Topics(s.topics)
        self.registry: dict[str, StreamInfo] = {}
        self.stats: dict[str, StreamStats] = {}
        self.subscribers: set[Subscriber] = set()
        self._frames: dict[str, OrderedDict[int, tuple[FrameMeta, bytes]]] = {}
        self._pending: dict[tuple[str, int], tuple[float, Result]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.ready = asyncio.Event()
        self.kafka_ok = False

    # --- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._poll_forever, name="fanout", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        self._stop.set()
        if self._thread:
            await asyncio.to_thread(self._thread.join, 10)

    def subscribe(self, streams: Iterable[str] | None) -> Subscriber:
        sub = Subscriber(frozenset(streams) if streams is not None else None, self.s.client_queue)
        self.subscribers.add(sub)
        WS_CLIENTS.set(len(self.subscribers))
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)
        WS_CLIENTS.set(len(self.subscribers))

    # --- Kafka thread ------------------------------------------------------------------------
    def _consumer(self) -> Consumer:
        cfg = self.s.kafka.client_config() | {
            "group.id": f"evi-gateway-{uuid.uuid4().hex[:12]}",  # never joined: manual assign
            "enable.auto.commit": False,
            "fetch.max.bytes": 64 << 20,
            "max.partition.fetch.bytes": self.s.topics.max_message_bytes + (64 << 10),
        }
        return Consumer(cfg)

    def _assign(self, c: Consumer) -> None:
        """Live topics from their current end (explicit offsets, so 'ready' is exact);
        the registry from its beginning."""
        md = c.list_topics(timeout=10)
        tps: list[TopicPartition] = []
        live = [self.topics.frames(k) for k in self.s.kinds]
        live += [self.topics.results(k) for k in self.s.kinds]
        for name in live:
            meta = md.topics.get(name)
            if meta is None or meta.error is not None:
                log.warning("topic %s does not exist yet; run `evi kafka topics`", name)
                continue
            for p in meta.partitions:
                _, high = c.get_watermark_offsets(TopicPartition(name, p), timeout=10)
                tps.append(TopicPartition(name, p, high))
        if self.topics.streams in md.topics:
            tps.append(TopicPartition(self.topics.streams, 0, OFFSET_BEGINNING))
        c.assign(tps)

    def _poll_forever(self) -> None:
        assert self._loop is not None
        loop = self._loop
        while not self._stop.is_set():
            try:
                c = self._consumer()
                self._assign(c)
            except Exception as e:  # broker down at start: keep trying, /readyz says so
                log.warning("gateway cannot reach Kafka yet: %s", e)
                self.kafka_ok = False
                self._stop.wait(2.0)
                continue
            self.kafka_ok = True
            loop.call_soon_threadsafe(self.ready.set)
            try:
                while not self._stop.is_set():
                    batch = c.consume(num_messages=500, timeout=0.2)
                    if batch:
                        loop.call_soon_threadsafe(self._dispatch, batch)
                    else:
                        loop.call_soon_threadsafe(self._expire_pending)
            finally:
                c.close()

    # --- event loop --------------------------------------------------------------------------
    def _dispatch(self, batch: list[Message]) -> None:
        frames_prefix = f"{self.topics.prefix}.frames."
        for m in batch:
            err = m.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("gateway consumer: %s", err)
                continue
            topic = m.topic() or ""
            if topic == self.topics.streams:
                self._on_registry(m)
            elif topic.startswith(frames_prefix):
                self._on_frame(m)
            else:
                self._on_result(m)
        self._expire_pending()

    def _on_registry(self, m: Message) -> None:
        key, value = m.key(), m.value()
        if key is None:
            return
        if value is None:  # tombstone: the stream was removed
            self.registry.pop(key.decode(errors="replace"), None)
            return
        try:
            info = decode_stream_info(value)
        except BadResult as e:
            BAD_RECORDS.labels(m.topic()).inc()
            log.warning("bad registry record key=%r: %s", key[:64], e)
            return
        self.registry[info.stream] = info
        for sub in self.subscribers:
            if sub.wants(info.stream):
                sub.offer(pack_message({"type": "stream", "info": asdict(info)}, b""))

    def _on_frame(self, m: Message) -> None:
        try:
            meta = parse_frame(m.key(), m.value(), m.headers())
        except BadFrame:
            BAD_RECORDS.labels(m.topic()).inc()
            return
        self._stats(meta.stream).on_frame(meta.ts_ms)
        cache = self._frames.setdefault(meta.stream, OrderedDict())
        jpeg = m.value() or b""
        pending = self._pending.pop((meta.stream, meta.seq), None)
        if pending is not None:
            self._publish(pending[1], jpeg)
        cache[meta.seq] = (meta, jpeg)
        while len(cache) > self.s.frame_cache:
            cache.popitem(last=False)

    def _on_result(self, m: Message) -> None:
        try:
            r = decode_result(m.value() or b"")
        except BadResult as e:
            BAD_RECORDS.labels(m.topic()).inc()
            log.warning("bad result record on %s: %s", m.topic(), e)
            return
        self._stats(r.stream).on_result(r)
        cache = self._frames.get(r.stream)
        hit = cache.get(r.seq) if cache is not None else None
        if hit is not None:
            self._publish(r, hit[1])
        elif self.s.pair_wait_ms:
            self._pending[(r.stream, r.seq)] = (time.monotonic(), r)
        else:
            self._publish(r, b"")

    def _expire_pending(self) -> None:
        if not self._pending:
            return
        limit = time.monotonic() - self.s.pair_wait_ms / 1000
        for key, (t, r) in list(self._pending.items()):
            if t < limit:
                del self._pending[key]
                UNPAIRED.inc()
                self._publish(r, b"")

    def _publish(self, r: Result, jpeg: bytes) -> None:
        message = None
        for sub in self.subscribers:
            if sub.wants(r.stream):
                message = message or pack_message(result_header(r, bool(jpeg)), jpeg)
                sub.offer(message)

    def _stats(self, stream: str) -> StreamStats:
        st = self.stats.get(stream)
        if st is None:
            st = self.stats[stream] = StreamStats()
        return st
