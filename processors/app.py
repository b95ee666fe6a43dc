"""The faust app of one processor worker: frames topic → pipeline → results topic.

Correctness rests on a few faust facts (docs/processors.md):
- agent concurrency stays 1 (faust-streaming#606: with more, faust can commit past an in-flight
  event); parallelism comes from partitions, processes, and the micro-batch below;
- `take_events` acks a batch only after our loop body returns, i.e. after its results were handed
  to the producer, and faust flushes the producer before every offset commit: at-least-once.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import faust
from faust.types import EventT
from prometheus_client import generate_latest

from evi.errors import BadFrame
from evi.topics import Topics
from evi.wire import FrameMeta, dead_letter_headers, encode_result, parse_frame
from processors import metrics
from processors.pipeline import FramePipeline
from processors.settings import ProcessorSettings

log = logging.getLogger("evi.processor")


def pick_port(bind: str) -> int:
    """A free port for `web_port: 0` (faust itself refuses 0): several workers on one host."""
    with socket.socket() as sock:
        sock.bind((bind, 0))
        port: int = sock.getsockname()[1]
        return port


def faust_config(s: ProcessorSettings, group: str) -> dict[str, Any]:
    """Every faust setting we choose on purpose, in one place."""
    max_bytes = s.topics.max_message_bytes
    return {
        "id": group,
        "broker": [f"kafka://{h.strip()}" for h in s.kafka.bootstrap_servers.split(",")],
        "key_serializer": "raw",
        "value_serializer": "raw",
        "web_enabled": True,
        "web_port": s.web_port or pick_port(s.web_bind),
        "web_bind": s.web_bind,
        "datadir": str(s.cache_dir / "faust" / group),
        "topic_disable_leader": True,  # no extra `__assignor-__leader` topic per app
        "topic_allow_declare": False,  # topics are created by `evi kafka topics`, with our configs
        "broker_commit_interval": s.commit_interval_s,
        "broker_session_timeout": s.session_timeout_s,
        "broker_heartbeat_interval": s.heartbeat_interval_s,
        "broker_max_poll_interval": s.max_poll_interval_s,
        "consumer_auto_offset_reset": s.auto_offset_reset,
        # Frame-sized limits move together: producer request, consumer fetch, topic config.
        "producer_max_request_size": max_bytes + 64 * 1024,
        "consumer_max_fetch_size": max_bytes + 64 * 1024,
        "stream_buffer_maxsize": s.prefetch,
        "producer_acks": -1,
        "producer_compression_type": None,
    }


class FrameHandler:
    """Turns one micro-batch of frame events into results and dead letters, in order."""

    def __init__(self, s: ProcessorSettings, pipeline: FramePipeline, app: faust.App) -> None:
        self.s = s
        self.pipeline = pipeline
        self.kind = s.kind
        self.model = pipeline.model_name
        topics = Topics(s.topics)
        self.results = app.topic(topics.results(s.kind), key_type=bytes, value_type=bytes)
        self.dlq = app.topic(topics.dlq(s.kind), key_type=bytes, value_type=bytes)
        self.max_bytes = s.topics.max_message_bytes
        self.frames = metrics.FRAMES.labels(self.kind, self.model)
        self.infer_seconds = metrics.INFER_SECONDS.labels(self.kind, self.model)
        self.e2e_seconds = metrics.E2E_SECONDS.labels(self.kind, self.model)
        self.batch_frames = metrics.BATCH_FRAMES.labels(self.kind, self.model)

    async def handle(self, events: Sequence[EventT[Any]]) -> None:
        self.batch_frames.observe(len(events))
        now_ms = time.time() * 1000
        jobs = []
        for event in events:
            msg = event.message
            try:
                meta = parse_frame(msg.key, msg.value, msg.headers, self.max_bytes)
            except BadFrame as bad:
                await self.dead_letter(event, bad)
                continue
            if self.s.policy == "drop-stale" and now_ms - meta.ts_ms > self.s.max_age_ms:
                metrics.DROPPED.labels(self.kind, self.model, "stale").inc()
                continue
            # Start every frame of the batch now; they overlap in the executor and infer queue.
            jpeg = msg.value or b""  # parse_frame rejected empty values already
            job = asyncio.ensure_future(self.pipeline.run(meta, jpeg))
            jobs.append((event, meta, job))
        for event, meta, job in jobs:
            try:
                result = await job
            except BadFrame as bad:
                await self.dead_letter(event, bad, meta)
                continue
            await self.results.send(key=meta.stream.encode(), value=encode_result(result))
            self.frames.inc()
            self.infer_seconds.observe(result.infer_ms / 1000)
            self.e2e_seconds.observe(max(0.0, (result.processed_ms - meta.ts_ms) / 1000))

    async def dead_letter(
        self, event: EventT[Any], bad: BadFrame, meta: FrameMeta | None = None
    ) -> None:
        msg = event.message
        metrics.DEAD_LETTERS.labels(self.kind, self.model, bad.reason).inc()
        where = f"tp={msg.topic}[{msg.partition}] offset={msg.offset}"
        ident = f"stream={meta.stream} seq={meta.seq} " if meta else ""
        log.warning("dead letter %s%s: %s", ident, where, bad)
        value = msg.value or b""
        if len(value) > self.max_bytes:
            value = b""  # the reason header says it was too large; keep the DLQ writable
        headers = dead_letter_headers(
            bad.reason, bad.message, msg.topic, msg.partition, msg.offset, msg.headers
        )
        await self.dlq.send(key=msg.key, value=value, headers=headers)


def create_app(s: ProcessorSettings, pipeline: FramePipeline) -> faust.App:
    topics = Topics(s.topics)
    group = topics.group(s.kind, s.model)
    (s.cache_dir / "faust").mkdir(parents=True, exist_ok=True)  # faust mkdirs only the leaf
    app = faust.App(**faust_config(s, group))
    frames = app.topic(topics.frames(s.kind), key_type=bytes, value_type=bytes)
    handler = FrameHandler(s, pipeline, app)
    within = s.batch_within_ms / 1000

    async def infer(stream: faust.StreamT[bytes]) -> AsyncIterator[None]:
        take = stream.take_events  # type: ignore[attr-defined]  # missing from faust's StreamT
        batches: AsyncIterator[Sequence[EventT[Any]]] = take(s.batch_max, within=within)
        async for events in batches:
            await handler.handle(events)
            yield None

    # concurrency=1 on purpose: see the module docstring.
    app.agent(frames, name=f"{group}.infer", concurrency=1)(infer)

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        # aiohttp refuses a charset inside content_type; the exposition format is UTF-8 anyway.
        return web.bytes(generate_latest(), content_type="text/plain; version=0.0.4")

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        return web.json({"status": "ok", "kind": s.kind, "group": group})

    return app
