"""How many produce requests a librdkafka producer sent, from its own statistics."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import Producer


class ProduceRequests:
    """Wraps the Producer class: the producer it makes reports its statistics here (every
    100 ms, from whichever thread polls it)."""

    def __init__(self) -> None:
        self._latest: dict[str, Any] | None = None
        self._reports = 0
        self._cond = threading.Condition()

    def factory(self) -> Callable[[dict[str, Any]], Producer]:
        def make(config: dict[str, Any]) -> Producer:
            return Producer(config | {"statistics.interval.ms": 100, "stats_cb": self._on_stats})

        return make

    def _on_stats(self, raw: str) -> None:
        with self._cond:
            self._latest = json.loads(raw)
            self._reports += 1
            self._cond.notify_all()

    def count(self, timeout: float = 10.0) -> int:
        """Produce requests sent so far, from a report made after this call (bounded wait)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            seen = self._reports
            while self._reports < seen + 2:  # the next one may have been under way already
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no librdkafka statistics within {timeout}s")
                self._cond.wait(left)
            assert self._latest is not None
            return sum(int(b["req"].get("Produce", 0)) for b in self._latest["brokers"].values())
