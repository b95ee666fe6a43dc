"""Reading one Kafka record: decode it or say in one stable word why not.

Nothing a record holds may stop the gateway: every record that cannot be used is counted in
`evi_gateway_bad_records_total{topic,reason}` and skipped, and the log says so at most once per
`LOG_EVERY_S` per reason (a flood of bad records must not become a flood of log lines).
"""

from __future__ import annotations

import logging
import time

from confluent_kafka import Message
from prometheus_client import Counter

from evi.errors import BadFrame
from evi.wire import (
    BadResult,
    FrameMeta,
    Result,
    StreamInfo,
    decode_result,
    decode_stream_info,
    parse_frame,
    valid_stream_id,
)

log = logging.getLogger("evi.gateway")

RECORDS = Counter("evi_gateway_records_total", "Kafka records read", ["type"])
BAD_RECORDS = Counter(
    "evi_gateway_bad_records_total", "Records the gateway could not use, skipped",
    ["topic", "reason"],
)

# Reasons besides a BadFrame's own (missing-header, bad-header, bad-schema, bad-key,
# bad-content-type, empty, too-large, not-jpeg: evi.wire.parse_frame's words).
BAD_JSON = "bad-json"  # a result or registry value that is not a JSON object
BAD_FIELD = "bad-field"  # JSON, but a field is missing, of the wrong type or out of range
BAD_KEY = "bad-key"  # no key, a key that is not a stream id, or one that is not the value's
ERROR = "error"  # handling the record raised something unexpected (a bug): counted, skipped

LOG_EVERY_S = 10.0


class Bad(Exception):
    """A record that cannot be used, with the reason label it is counted under."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class RateLimitedLog:
    """One warning per key per `every_s`, saying how many were not logged in between."""

    def __init__(self, every_s: float = LOG_EVERY_S) -> None:
        self.every_s = every_s
        self._next: dict[str, float] = {}  # keyed by reason words: a bounded set
        self._quiet: dict[str, int] = {}

    def warning(self, key: str, msg: str, *args: object, exc: bool = False) -> bool:
        now = time.monotonic()
        if now < self._next.get(key, 0.0):
            self._quiet[key] = self._quiet.get(key, 0) + 1
            return False
        self._next[key] = now + self.every_s
        quiet = self._quiet.pop(key, 0)
        more = f" ({quiet} more like it not logged in the last {self.every_s:g}s)" if quiet else ""
        log.warning(msg + more, *args, exc_info=exc)
        return True


_NOT_JSON = tuple(f"{what} is not {a}" for what in ("result", "stream registry record")
                  for a in ("JSON", "a JSON object"))  # evi.wire._json_object's words


def _result_reason(e: BadResult) -> str:
    return BAD_JSON if str(e).startswith(_NOT_JSON) else BAD_FIELD


def stream_key(key: bytes | None) -> str:
    """A record key that must be a stream id (results, registry, tombstones)."""
    if key is None:
        raise Bad(BAD_KEY, "record has no key")
    stream = key[:129].decode("utf-8", "replace")
    if not valid_stream_id(stream):
        raise Bad(BAD_KEY, f"key {key[:64]!r} is not a stream id")
    return stream


def frame(m: Message, max_bytes: int) -> tuple[FrameMeta, bytes]:
    value = m.value()
    try:
        meta = parse_frame(m.key(), value, m.headers(), max_bytes)
    except BadFrame as e:
        raise Bad(e.reason, e.message) from None
    assert value is not None  # parse_frame refuses an empty value
    return meta, value


def result(m: Message) -> Result:
    try:
        r = decode_result(m.value())
    except BadResult as e:
        raise Bad(_result_reason(e), str(e)) from None
    if stream_key(m.key()) != r.stream:
        raise Bad(BAD_KEY, f"key {m.key()!r:.64} is not the result's stream {r.stream!r}")
    return r


def registry(m: Message) -> tuple[str, StreamInfo | None]:
    """(stream, its entry), or (stream, None) for a tombstone."""
    stream = stream_key(m.key())
    value = m.value()
    if value is None:
        return stream, None
    try:
        info = decode_stream_info(value)
    except BadResult as e:
        raise Bad(_result_reason(e), str(e)) from None
    if info.stream != stream:
        raise Bad(BAD_KEY, f"key {stream!r} is not the entry's stream {info.stream!r}")
    return stream, info
