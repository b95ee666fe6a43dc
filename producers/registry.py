"""Stream status records in the compacted `evi.streams` topic (key = stream id).

Status updates use their own small librdkafka producer with no message timeout, so frame
backpressure can never push one out; a failed delivery re-sends the stream's latest status.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from evi.wire import StreamInfo, encode_stream_info

log = logging.getLogger("evi.producer.registry")

LIVE, RECONNECTING, ENDED, ERROR = "live", "reconnecting", "ended", "error"


def registry_config(client: dict[str, Any], client_id: str) -> dict[str, Any]:
    return client | {
        "client.id": f"{client_id}-registry",
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 0,
        "message.timeout.ms": 0,  # never give up on a status update
        "reconnect.backoff.ms": 100,
        "reconnect.backoff.max.ms": 2000,
    }


class Registry:
    def __init__(
        self,
        config: dict[str, Any],
        topic: str,
        producer_id: str,
        producer_factory: Callable[[dict[str, Any]], Any] = Producer,
    ) -> None:
        self.topic = topic
        self.producer_id = producer_id
        self._producer = producer_factory(config)
        self._lock = threading.Lock()
        self._latest: dict[str, StreamInfo] = {}
        self._version: dict[str, int] = {}

    def latest(self, stream: str) -> StreamInfo | None:
        with self._lock:
            return self._latest.get(stream)

    def update(self, info: StreamInfo, **changes: Any) -> StreamInfo:
        """Record a stream's new status (fields of `info` overridden by `changes`)."""
        info = replace(
            info, producer=self.producer_id, updated_ms=int(time.time() * 1000), **changes
        )
        with self._lock:
            self._latest[info.stream] = info
            version = self._version.get(info.stream, 0) + 1
            self._version[info.stream] = version
        self._send(info, version)
        return info

    def _send(self, info: StreamInfo, version: int) -> None:
        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            if err is None:
                return
            log.warning("stream=%s status %s not delivered (%s); resending", info.stream,
                        info.status, err.str())
            with self._lock:
                current = self._version.get(info.stream) == version
            if current and err.code() not in (KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT):
                self._send(info, version)

        value = encode_stream_info(info)
        for _ in range(200):
            try:
                self._producer.produce(
                    self.topic, value, info.stream.encode(), on_delivery=on_delivery
                )
                break
            except BufferError:
                self._producer.poll(0.01)
        else:  # status updates are few: a full queue here means librdkafka is wedged
            log.error("stream=%s status %s not queued: librdkafka's queue stayed full for 2s",
                      info.stream, info.status)
        self._producer.poll(0)

    def close(self, timeout: float) -> int:
        """Flush status updates; return how many are still undelivered."""
        left: int = self._producer.flush(timeout)
        if left:
            log.warning("%d stream status updates not delivered within %.1fs", left, timeout)
        return left
