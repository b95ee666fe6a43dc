"""One log format for every service: time, level, logger, message (which carries identity).

librdkafka's own log comes through here too (`librdkafka_logger`, given to every confluent-kafka
client by `KafkaSettings.client_config`): without a logger librdkafka prints each connection
retry to stderr as `%3|1700000000.123|FAIL|rdkafka#producer-1| ...`, ~20 lines a second while
the broker is away.
"""

from __future__ import annotations

import logging
import re
import threading
import time

LIBRDKAFKA = "evi.librdkafka"
# confluent-kafka logs each librdkafka line as logger.log(level, "%s [%s] %s", facility, client
# name, text), with syslog levels 0-7 mapped to logging's (3 -> ERROR, 4 -> WARNING, 7 -> DEBUG).
# tests/evi/test_log.py breaks if that changes.
LIBRDKAFKA_FORMAT = "%s [%s] %s"
# The broker not answering. Every service says that itself, once, in its own words; librdkafka
# would repeat it per connection attempt. SSL, SASL and protocol errors are not in this list.
_UNREACHABLE = re.compile(
    r"Connect to .* failed|Failed to resolve|brokers are down|Connection refused|"
    r"Connection setup timed out|Failed to connect"
)
_DIGITS = re.compile(r"\d+")


def setup(level: str) -> None:
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )
    # Faust and aiokafka are chatty at INFO; their warnings still show.
    for noisy in ("aiokafka", "faust", "mode"):
        logging.getLogger(noisy).setLevel(max(logging.getLevelName(level), logging.WARNING))


class RepeatFilter(logging.Filter):
    """Let a log message through once per `quiet_s`, comparing texts with digits removed
    (librdkafka repeats "Connect to ...:9092 failed (after 0ms ...)" on every retry)."""

    def __init__(self, quiet_s: float = 30.0, max_keys: int = 1000) -> None:
        super().__init__()
        self.quiet_s = quiet_s
        self.max_keys = max_keys
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        key = _DIGITS.sub("", record.getMessage())
        now = time.monotonic()
        with self._lock:
            last = self._seen.get(key)
            if last is not None and now - last < self.quiet_s:
                return False
            if len(self._seen) >= self.max_keys:
                self._seen.clear()
            self._seen[key] = now
        return True


class LibrdkafkaFilter(RepeatFilter):
    """On a logger that receives librdkafka lines: 'broker does not answer' lines only at DEBUG
    (the service reports that itself), any other librdkafka line once per `quiet_s`. The
    logger's own lines pass untouched."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg != LIBRDKAFKA_FORMAT:
            return True
        if _UNREACHABLE.search(record.getMessage()):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            if not logging.getLogger(record.name).isEnabledFor(logging.DEBUG):
                return False
        return super().filter(record)


def tame_librdkafka(logger: logging.Logger, quiet_s: float = 60.0) -> logging.Logger:
    """Add the LibrdkafkaFilter to `logger` once (for clients given their own logger)."""
    if not any(isinstance(f, LibrdkafkaFilter) for f in logger.filters):
        logger.addFilter(LibrdkafkaFilter(quiet_s))
    return logger


def librdkafka_logger() -> logging.Logger:
    return tame_librdkafka(logging.getLogger(LIBRDKAFKA))
