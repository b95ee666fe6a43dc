"""librdkafka's log through Python logging: what confluent-kafka hands the logger (breaks if that
changes), and the filter that keeps an absent broker to the service's own one line."""

from __future__ import annotations

import logging
import time

from confluent_kafka import Producer

from evi.log import LIBRDKAFKA_FORMAT, LibrdkafkaFilter, librdkafka_logger
from evi.settings import KafkaSettings


class Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def record(text: str, level: int = logging.ERROR, name: str = "t") -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, LIBRDKAFKA_FORMAT,
                             ("FAIL", "rdkafka#producer-1", text), None)


def test_confluent_kafka_logs_librdkafka_lines_to_the_configured_logger() -> None:
    # Nothing listens on port 1: librdkafka's connect failure must come to the logger (as
    # "%s [%s] %s" at ERROR), on poll(), and not to stderr.
    logger = logging.getLogger("t.evidence")
    logger.propagate = False
    keep = Keep()
    logger.addHandler(keep)
    p = Producer({"bootstrap.servers": "127.0.0.1:1", "logger": logger})
    deadline = time.monotonic() + 10
    while not keep.records and time.monotonic() < deadline:
        p.poll(0.2)
    assert keep.records, "no librdkafka line reached the logger in 10 s"
    first = keep.records[0]
    assert first.msg == LIBRDKAFKA_FORMAT and first.levelno == logging.ERROR
    facility, client, text = first.args  # type: ignore[misc]
    assert facility == "FAIL" and client.startswith("rdkafka#producer")
    assert "Connect to ipv4#127.0.0.1:1 failed" in text


def test_broker_down_lines_show_only_at_debug() -> None:
    logger = logging.getLogger("t.down")
    logger.setLevel(logging.INFO)
    f = LibrdkafkaFilter(60)
    line = "127.0.0.1:1/bootstrap: Connect to ipv4#127.0.0.1:1 failed: Connection refused"
    for text in (line, "1/1 brokers are down", "Failed to resolve 'nohost:9092': Name unknown"):
        assert not f.filter(record(text, name="t.down"))
    logger.setLevel(logging.DEBUG)
    shown = record(line, name="t.down")
    assert f.filter(shown) and shown.levelno == logging.DEBUG and shown.levelname == "DEBUG"


def test_other_librdkafka_lines_show_once_per_quiet_period() -> None:
    f = LibrdkafkaFilter(60)
    ssl = "ssl://broker:9093/bootstrap: SSL handshake failed: cert verify failed (after {}ms)"
    assert f.filter(record(ssl.format(3)))
    assert not f.filter(record(ssl.format(7)))  # the same line but for its numbers
    assert f.filter(record("SASL authentication error: Authentication failed"))


def test_the_loggers_own_lines_pass_untouched() -> None:
    f = LibrdkafkaFilter(60)
    own = logging.LogRecord("t", logging.WARNING, __file__, 1, "Kafka at %s does not answer",
                            ("127.0.0.1:1",), None)
    assert f.filter(own) and f.filter(own) and own.levelno == logging.WARNING


def test_every_client_config_carries_the_filtered_logger() -> None:
    logger = KafkaSettings().client_config()["logger"]
    assert logger is librdkafka_logger()
    assert sum(isinstance(f, LibrdkafkaFilter) for f in logger.filters) == 1
