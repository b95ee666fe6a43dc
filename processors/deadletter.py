"""Dead letters: a bad frame's record, with why and where, sent so that it always fits its topic.

The copy of the original is bounded: the key to KEY_MAX bytes, the headers by
`evi.wire.dead_letter_headers`, and the value dropped when key + headers + value would pass the
topic's `max.message.bytes`; `evi-dlq-cut` says what was left out. Should the broker still refuse
the record as too large (a topic created with a smaller limit than evi's settings), a minimal
one — reason, error, origin, no key or value — is sent in its place: a frame must never make its
worker fail a delivery.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Sequence
from typing import Any, Protocol

from confluent_kafka import KafkaError, KafkaException
from faust.types import EventT

from evi.errors import BadFrame
from evi.wire import FrameMeta, dead_letter_headers
from processors import metrics

log = logging.getLogger("evi.processor")

KEY_MAX = 256  # stream ids are at most 128 bytes; a longer key is not one
RECORD_OVERHEAD = 1024  # record framing, batch header, and slack
TOO_LARGE = frozenset({
    KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.RECORD_LIST_TOO_LARGE, KafkaError.INVALID_RECORD,
    KafkaError.INVALID_MSG_SIZE,
})  # fmt: skip


class Sender(Protocol):
    """processors.sink.Sink, or a stand-in in tests."""

    async def send(
        self, topic: str, key: bytes | None, value: bytes,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> asyncio.Future[None]: ...  # fmt: skip


def _headers_size(headers: Sequence[tuple[str, bytes]]) -> int:
    return sum(len(k) + len(v) + 8 for k, v in headers)


class DeadLetters:
    def __init__(self, sink: Sender, topic: str, max_bytes: int, kind: str, model: str) -> None:
        self.sink = sink
        self.topic = topic
        self.max_bytes = max_bytes
        self.kind = kind
        self.model = model

    async def send(self, event: EventT[Any], bad: BadFrame, meta: FrameMeta | None = None
                   ) -> Awaitable[None]:  # fmt: skip
        """Count, log one line, hand the record to the sink; the returned awaitable settles
        with its delivery (or with the minimal record's)."""
        msg = event.message
        metrics.DEAD_LETTERS.labels(self.kind, self.model, bad.reason).inc()
        ident = f"stream={meta.stream} seq={meta.seq} " if meta else ""
        log.warning("dead letter %s%s: %s", ident, where(event), bad)
        cut: list[str] = []
        key = msg.key if isinstance(msg.key, bytes) else None
        if key is not None and len(key) > KEY_MAX:
            cut.append(f"key of {len(key)} bytes cut to {KEY_MAX}")
            key = key[:KEY_MAX]
        value = msg.value if isinstance(msg.value, bytes) else b""
        origin = (bad.reason, bad.message, msg.topic, msg.partition, msg.offset)
        headers = dead_letter_headers(*origin, msg.headers, cut)
        room = self.max_bytes - RECORD_OVERHEAD - len(key or b"") - _headers_size(headers) - 64
        if len(value) > room:
            cut.append(f"value of {len(value)} bytes dropped (topic limit {self.max_bytes})")
            value = b""
            headers = dead_letter_headers(*origin, msg.headers, cut)
        minimal = dead_letter_headers(*origin, None, ["everything but why and where: the "
                                                      "broker refused the full record"])
        try:
            fut = await self.sink.send(self.topic, key, value, headers)
        except KafkaException as e:  # refused before it left (librdkafka's own size check)
            return await self._minimal(e, minimal)
        return asyncio.ensure_future(self._confirm(fut, minimal))

    async def _confirm(self, fut: Awaitable[None], minimal: list[tuple[str, bytes]]) -> None:
        try:
            await fut
        except KafkaException as e:
            await (await self._minimal(e, minimal))

    async def _minimal(self, e: KafkaException, minimal: list[tuple[str, bytes]]
                       ) -> Awaitable[None]:  # fmt: skip
        err = e.args[0] if e.args else None
        if not isinstance(err, KafkaError) or err.code() not in TOO_LARGE:
            raise e  # not about the record: the caller's failure is fatal
        log.warning("dead letter refused (%s): sending why and where only", err.name())
        return await self.sink.send(self.topic, None, b"", minimal)


def where(event: EventT[Any]) -> str:
    msg = event.message
    return f"tp={msg.topic}[{msg.partition}] offset={msg.offset}"
