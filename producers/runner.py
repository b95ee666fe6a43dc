"""Run a producer process: topics, registry, one capture thread per stream, bounded shutdown."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import ConfigResource, ResourceType  # type: ignore[attr-defined]

from evi.demo import Schedule
from evi.kafka import admin, ensure_topics, unreachable
from evi.settings import KafkaSettings
from evi.topics import Topics
from producers.capture import StreamWorker, make_stream_source
from producers.metrics import ProducerMetrics
from producers.publisher import Publisher, producer_config
from producers.registry import Registry, registry_config
from producers.settings import ProducerSettings, StreamConfig
from producers.sources import Source

log = logging.getLogger("evi.producer")

TOPICS_TIMEOUT_S = 3.0


def topic_limits(kafka: KafkaSettings, names: list[str], timeout: float) -> dict[str, int]:
    """max.message.bytes of each existing topic in `names` (the broker's effective value)."""
    client = admin(kafka)  # referenced until the futures are done
    fs = client.describe_configs(
        [ConfigResource(ResourceType.TOPIC, n) for n in names], request_timeout=timeout
    )
    out: dict[str, int] = {}
    for res, fut in fs.items():
        try:
            entry = fut.result(timeout)["max.message.bytes"]
        except (KafkaException, KeyError, TimeoutError):
            continue
        if entry.value is not None:
            out[res.name] = int(entry.value)
    return out


def _limits(settings: ProducerSettings) -> dict[str, int]:
    """Frame topics that accept less than topics.max_message_bytes, each logged once."""
    topics = Topics(settings.topics)
    ceiling = settings.topics.max_message_bytes
    try:
        found = topic_limits(settings.kafka, [topics.frames(k) for k in settings.kinds()],
                             TOPICS_TIMEOUT_S)
    except KafkaException:
        return {}
    low = {t: n for t, n in found.items() if n < ceiling}
    for t, n in sorted(low.items()):
        log.warning("topic %s accepts messages up to %d bytes, less than topics.max_message_bytes"
                    " %d: larger frames to it are dropped as too_large", t, n, ceiling)
    return low


def _ensure_topics(settings: ProducerSettings, stop: threading.Event) -> bool:
    """Create missing topics; when the broker does not answer, keep trying in the background.
    True when the topics were confirmed now."""
    specs = Topics(settings.topics).producer_specs(settings.kinds())  # what it writes, no more

    def attempt(first: bool) -> bool:
        try:
            ensure_topics(settings.kafka, specs, timeout=TOPICS_TIMEOUT_S)
            return True
        except KafkaException as e:
            if first:  # said once; the retries are silent until the broker answers
                problem = "does not answer" if unreachable(e) else e.args[0].str()
                log.warning("Kafka at %s %s: retrying, frames are dropped oldest-first until it "
                            "does", settings.kafka.bootstrap_servers, problem)
            return False

    def retry() -> None:
        for _ in range(100_000):
            if stop.wait(TOPICS_TIMEOUT_S):
                return
            if attempt(first=False):
                log.info("Kafka at %s answers: topics ready", settings.kafka.bootstrap_servers)
                return

    if attempt(first=True):
        return True
    threading.Thread(target=retry, name="evi-topics", daemon=True).start()
    return False


def run(
    settings: ProducerSettings,
    stop: threading.Event,
    metrics: ProducerMetrics | None = None,
    producer_factory: Callable[[dict[str, Any]], Any] = Producer,
    source_factory: Callable[[StreamConfig, float], Source] = make_stream_source,
    schedule: Schedule | None = None,
) -> int:
    """Produce until every stream ends or `stop` is set; 0 iff every frame was delivered.
    With a `schedule`, stream number i (1-based, in order) sends at its rate from now on."""
    metrics = metrics or ProducerMetrics()
    topics = Topics(settings.topics)
    limits = _limits(settings) if _ensure_topics(settings, stop) else {}
    pid = settings.producer_id
    max_bytes = settings.topics.max_message_bytes
    publisher = Publisher(
        producer_config(settings.kafka, settings.publisher, max_bytes, pid,
                        min(limits.values(), default=None)),
        settings.publisher, max_bytes, metrics, producer_factory, limits,
    )
    registry = Registry(registry_config(settings.kafka.client_config(), pid),
                        topics.streams, pid, producer_factory)
    t0 = time.monotonic()

    def rate(i: int) -> Callable[[float], float] | None:
        return None if schedule is None else lambda now: schedule.fps(i, now - t0)

    workers = [
        StreamWorker(cfg, settings, publisher, registry, metrics, stop, source_factory,
                     rate(i))
        for i, cfg in enumerate(settings.streams, start=1)
    ]
    publisher.start()
    for w in workers:
        w.start()
    log.info("producing %d stream(s) as %s to %s", len(workers), pid,
             settings.kafka.bootstrap_servers)
    while any(w.is_alive() for w in workers) and not stop.wait(0.1):
        pass
    stop.set()
    deadline = time.monotonic() + settings.reconnect.open_timeout_s + 1.0
    for w in workers:
        w.join(max(0.1, deadline - time.monotonic()))
        if w.is_alive():
            log.warning("stream=%s source did not stop in time; abandoning it", w.cfg.id)
    publisher.close(settings.publisher.flush_timeout_s)
    registry.close(max(1.0, settings.publisher.flush_timeout_s))
    return summarize(workers, publisher)


def summarize(workers: list[StreamWorker], publisher: Publisher) -> int:
    failed = 0
    for w in workers:
        st = publisher.stats(w.cfg.id)
        drops = ", ".join(f"{k}={v}" for k, v in sorted(st.dropped.items()))
        if w.error:
            failed += 1
            log.error("stream=%s ended in error: %s", w.cfg.id, w.error)
        elif not st.complete:
            failed += 1
            log.error("stream=%s delivered %d of %d frame records (%d frames); dropped: %s",
                      w.cfg.id, st.acked, st.records, st.frames, drops or "none")
        else:
            log.info("stream=%s delivered %d frame records (%d frames)", w.cfg.id, st.acked,
                     st.frames)
    return 1 if failed else 0
