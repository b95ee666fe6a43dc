"""The faust app of one processor worker: frames topic → pipeline → results topic.

One agent per worker over `evi.frames.<kind>`, concurrency 1 (faust-streaming#606: with more
actors faust commits past an event still in flight); parallelism comes from partitions, processes,
the micro-batch (processors/take.py: handed over as soon as a batch slot is free) whose frames
all run at once, and the next batch starting while an emitter task finishes the last. How a batch
is acked only after its results are delivered: processors/handler.py. Frames a dead worker left
in flight: processors/quarantine.py. How the worker stops and crashes: processors/shutdown.py.
Why each faust setting below: docs/processors.md.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import faust
from confluent_kafka import KafkaException
from faust.sensors import Monitor
from faust.transport.consumer import Consumer
from faust.types import TP, EventT
from prometheus_client import generate_latest

from evi.settings import KafkaSettings
from evi.topics import Topics
from processors import metrics
from processors.handler import Acker, FrameHandler, PinnedEvent, Started, handed
from processors.health import Health
from processors.lag import EndOffsets, LagTracker
from processors.pipeline import FramePipeline
from processors.quarantine import Flight
from processors.seek import Resume
from processors.settings import ProcessorSettings
from processors.shutdown import Lifecycle
from processors.sink import HEADROOM, Sink
from processors.take import take_when_free
from processors.watchdog import Watchdog

log = logging.getLogger("evi.processor")
Page = Callable[[Any, Any], Awaitable[Any]]


def pick_port(bind: str) -> int:
    """A free port for `web_port: 0` (faust itself refuses 0): several workers on one host."""
    with socket.socket() as sock:
        sock.bind((bind, 0))
        port: int = sock.getsockname()[1]
        return port


def group_for(s: ProcessorSettings, model: str, default_model: str) -> str:
    """`--group-id`, else evi-processor-<kind>, or …-<model> for a model other than the kind's
    default (served side by side, each group sees every frame)."""
    if s.group_id:
        return s.group_id
    return Topics(s.topics).group(s.kind, None if model == default_model else model)


def broker_credentials(k: KafkaSettings) -> faust.types.auth.CredentialsT | None:
    """faust's form of the shared Kafka security settings (prod runs SASL_SSL)."""
    if k.security_protocol == "PLAINTEXT":
        return None
    ctx = None
    if k.security_protocol in ("SSL", "SASL_SSL"):
        ctx = ssl.create_default_context(cafile=str(k.ssl_cafile) if k.ssl_cafile else None)
    if k.security_protocol == "SSL":
        return faust.SSLCredentials(ctx)
    password = k.sasl_password.get_secret_value() if k.sasl_password else ""
    return faust.SASLCredentials(
        username=k.sasl_username or "", password=password, ssl_context=ctx,
        mechanism=k.sasl_mechanism or "PLAIN",
    )


class CommitMonitor(Monitor):
    """faust's Monitor minus its per-message bookkeeping (timestamps, counters and a dict per
    event, ~5 % of the worker's loop in bench/processor.py's profile); our own metrics count
    frames. What we read of it, `tp_committed_offsets` (processors/lag.py), is kept."""

    def on_message_in(self, tp: TP, offset: int, message: Any) -> None:
        pass

    def on_stream_event_in(self, tp: TP, offset: int, stream: Any, event: Any) -> None:
        return None

    def on_stream_event_out(
        self, tp: TP, offset: int, stream: Any, event: Any, state: Any = None
    ) -> None:
        pass

    def on_message_out(self, tp: TP, offset: int, message: Any) -> None:
        pass


def faust_config(s: ProcessorSettings, group: str) -> dict[str, Any]:
    """Every faust setting we choose on purpose, in one place (docs/processors.md)."""
    max_bytes = s.topics.max_message_bytes
    return {
        "id": group,
        "broker": [f"kafka://{h.strip()}" for h in s.kafka.bootstrap_servers.split(",")],
        "broker_credentials": broker_credentials(s.kafka),
        "key_serializer": "raw",
        "value_serializer": "raw",
        "web_enabled": True,
        "web_port": s.web_port or pick_port(s.web_bind),
        "web_bind": s.web_bind,
        # faust serves none of its own pages on our port (docs/processors.md, "faust's web pages"):
        # /router and /table would tell anyone who can scrape metrics the topology and data.
        "web_router_enabled": False, "web_tables_enabled": False, "web_stats_enabled": False,
        "web_graph_enabled": False, "web_metrics_enabled": False,
        "datadir": str(s.cache_dir / "faust" / group),
        "topic_disable_leader": True,  # no extra `__assignor-__leader` topic per app
        "topic_allow_declare": False,  # topics are created by `evi kafka topics`, with our configs
        "broker_commit_interval": s.commit_interval_s,
        "broker_commit_every": 10_000,  # faust's default; the interval commits first at video rates
        "broker_session_timeout": s.session_timeout_s,
        "broker_heartbeat_interval": s.heartbeat_interval_s,
        "broker_max_poll_interval": s.max_poll_interval_s,
        "consumer_auto_offset_reset": s.auto_offset_reset,
        # No client-side CRC32C of every fetched batch (34 µs per 48 KB frame on the consumer
        # thread, in software): librdkafka's default too; the broker checks CRCs on produce,
        # TCP on the wire, and a damaged JPEG still fails its strict decode (dead letter).
        "broker_check_crcs": False,
        # Frame-sized limits move together: producer request, consumer fetch, topic config.
        "producer_max_request_size": max_bytes + HEADROOM,
        "consumer_max_fetch_size": max_bytes + HEADROOM,
        "stream_buffer_maxsize": s.prefetch,
        "stream_wait_empty": True,  # a rebalance waits for acked batches before it commits
        # faust's own producer is idle (results go out through processors/sink.py); kept safe.
        "stream_publish_on_commit": False,
        "producer_acks": -1,
        "producer_compression_type": None,
        "Monitor": CommitMonitor,
        "Event": PinnedEvent,  # no frame acked before its result is delivered: handler.py
    }


@dataclass
class _Reach:
    """When Kafka last answered a lag measurement, and whether its absence was logged."""

    answered: float = field(default_factory=time.monotonic)
    said: bool = False


class Processor:
    """One worker's faust app and the collaborators it wires, read top to bottom: built in
    `__init__`, then the agent (`_infer`), the emitter (`_emit`) and acker beside it, the
    rebalance hook, the lag timer and the web pages. `app` is what `evi process` runs."""

    def __init__(self, s: ProcessorSettings, pipeline: FramePipeline, group: str) -> None:
        topics = Topics(s.topics)
        self.s = s
        self.frames_topic = topics.frames(s.kind)
        (s.cache_dir / "faust").mkdir(parents=True, exist_ok=True)  # faust mkdirs only the leaf
        self.app = faust.App(**faust_config(s, group))
        self.sink = Sink(s.kafka, s.topics.max_message_bytes, s.linger_ms, s.broker_outage_s)
        self.tracker = LagTracker(s.kind, self.frames_topic, pipeline.model.name)
        self.health = Health(s.kind, group, s.stall_timeout_s, pipeline.model.name)
        self.lifecycle = Lifecycle(s.drain_timeout_s)
        self.flight = (Flight(s.kafka, topics, group, self.frames_topic, s.quarantine_deaths,
                              s.topics.max_message_bytes, s.broker_outage_s)
                       if s.quarantine_deaths else None)  # fmt: skip
        self.watchdog = Watchdog(s.frame_budget_s)
        self.watchdog.start()
        self.handler = FrameHandler(s, pipeline, self.sink, self.tracker.processed, self.flight,
                                    self.watchdog)  # fmt: skip
        self.acker = Acker(self.lifecycle.fatal)
        self.resume = Resume(s.kafka, self.frames_topic, s.auto_offset_reset, s.start_from, group)
        self.end_offsets = EndOffsets(s.kafka)
        self.rates = (metrics.RateMeter(), metrics.RateMeter())  # inferred, dropped
        self.reach = _Reach()
        self.model = pipeline.model_name
        # The agent starts a batch while the one before is still being finished (its last frames
        # inferred, its results sent), so the pipeline never drains at a batch boundary.
        self.in_flight = asyncio.Semaphore(s.batches_in_flight)
        self.started: asyncio.Queue[Started] = asyncio.Queue()
        self.lifecycle.flushed = self._flushed

        frames = self.app.topic(self.frames_topic, key_type=bytes, value_type=bytes)
        # concurrency=1 on purpose (settings.CONCURRENCY_WHY); emitter and acker run beside it.
        self.app.agent(frames, name=f"{group}.infer", concurrency=s.concurrency)(self._infer)
        self.app.task(self._emit)
        self.app.task(self.acker.run)
        # mode types receivers with a union mypy matches no plain function against.
        self.app.on_rebalance_complete.connect(
            lambda sender, *args, **kwargs: self._on_assigned()  # type: ignore[arg-type]
        )
        self.app.timer(s.lag_interval_s)(self._measure)
        # faust makes a View of each page function, calling it as fun(view, request): plain
        # functions, not bound methods.
        self.app.page("/metrics")(_metrics_page)
        self.app.page("/healthz")(_health_page(self.health.live))
        self.app.page("/readyz")(_health_page(self.health.ready))

    async def _infer(self, stream: faust.StreamT[bytes]) -> None:
        """The agent: take micro-batches and start them; `_emit` finishes them in order."""
        async for events in self._batches(stream):
            handed(events)  # acks from here on are the taker's and ours: processors/handler.py
            await self.lifecycle.admit()
            try:
                self.started.put_nowait(await self.handler.start(events))
            except Exception as e:  # not about a frame (those are handled inside): crash
                self.in_flight.release()
                self.lifecycle.fatal(e, f"batch at {_where(events)}")

    async def _batches(self, stream: faust.StreamT[bytes]) -> AsyncIterator[list[EventT[Any]]]:
        """Micro-batches, each holding a batch slot (`in_flight`) that `_emit` releases."""
        s = self.s
        if not s.batch_within_ms:
            async for events in take_when_free(stream, s.batch_max, self.in_flight):
                yield events
            return
        take = stream.take_events  # type: ignore[attr-defined]  # missing from faust's StreamT
        async for events in take(s.batch_max, within=s.batch_within_ms / 1000):
            await self.in_flight.acquire()
            yield list(events)

    async def _emit(self) -> None:
        """Finish started batches in order (results out) and hand them to the acker."""
        failed = False
        while True:
            batch = await self.started.get()
            try:
                if not failed:  # after a failure, later batches stay pinned: replayed
                    await self.acker.submit(batch.events, await self.handler.finish(batch))
            except Exception as e:  # as in the agent: crash the worker
                failed = True
                self.lifecycle.fatal(e, f"batch at {_where(batch.events)}")
            finally:
                self.in_flight.release()
                self.started.task_done()

    async def _flushed(self) -> None:
        """Batches started before a fatal error are finished and delivered (so committed)."""
        await self.started.join()
        await self.acker.join()

    async def _on_assigned(self) -> None:
        # Before faust resumes fetching: a commit for every partition, and the seek to it.
        committed = await self.resume.on_assigned(cast(Consumer, self.app.consumer))
        self.tracker.on_assigned(committed)
        if self.flight is not None:  # batches wait until the last owners' records are read
            self.flight.on_assigned(committed)

    async def _measure(self) -> None:
        """Rates, lag and health, every `lag_interval_s`."""
        s, handler = self.s, self.handler
        infer_fps = self.rates[0].rate(handler.inferred)
        drop_fps = self.rates[1].rate(handler.dropped)
        metrics.FPS.labels(s.kind, self.model).set(round(infer_fps, 2))
        metrics.DROP_RATIO.labels(s.kind, self.model).set(
            round(drop_fps / infer_fps, 3) if infer_fps > 0 else 0.0)  # fmt: skip
        tps = {tp for tp in self.app.consumer.assignment() if tp.topic == self.frames_topic}
        try:
            ends = await self.end_offsets(tps)
        except (KafkaException, TimeoutError) as e:
            # The broker away: said once; past broker_outage_s the worker gives up even with
            # nothing to deliver (a delivery would fail at the same bound), and is restarted.
            away = time.monotonic() - self.reach.answered
            if away > s.broker_outage_s:
                self.lifecycle.fatal(e, f"Kafka has not answered for {away:.0f} s "
                                        "(broker_outage_s)")  # fmt: skip
            elif not self.reach.said:
                self.reach.said = True
                log.warning("cannot measure lag (Kafka away?): %s; giving up after %g s",
                            e.args[0] if e.args else e, s.broker_outage_s)  # fmt: skip
            return
        self.reach = _Reach()
        snap = self.tracker.update(ends, self.app.monitor.tp_committed_offsets or {})
        self.health.observe(snap, len(tps))


def _health_page(check: Callable[[], tuple[bool, dict[str, Any]]]) -> Page:
    async def page(web: Any, request: Any) -> Any:
        ok, doc = check()
        return web.json(doc, status=200 if ok else 503)

    return page


async def _metrics_page(web: Any, request: Any) -> Any:
    # aiohttp refuses a charset inside content_type; the exposition format is UTF-8 anyway.
    return web.bytes(generate_latest(), content_type="text/plain; version=0.0.4")


def _where(events: Sequence[EventT[Any]]) -> str:
    if not events:
        return "an empty batch"
    m = events[0].message
    return f"tp={m.topic}[{m.partition}] offset={m.offset} ({len(events)} frames)"
