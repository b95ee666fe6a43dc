"""A broker-free stand-in for confluent_kafka.Producer and a scripted video source."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from confluent_kafka import KafkaError

from producers.sources.base import Frame, Source, SourceError

Callback = Callable[[KafkaError | None, Any], None]


class FakeProducer:
    """Keeps produced records; `poll` acknowledges them while `up`, or fails them when
    `fail_with` is set. `max_queue` mimics librdkafka's queue limit (BufferError);
    `ack_interval` > 0 is a slow broker: one acknowledgement per interval."""

    def __init__(self, config: dict[str, Any] | None = None, max_queue: int = 100_000,
                 ack_interval: float = 0.0, up: bool = True) -> None:
        self.config = config or {}
        self.max_queue = max_queue
        self.ack_interval = ack_interval
        self.up = up
        self.fail_with: int | None = None
        self.records: list[tuple[str, bytes, bytes, list[tuple[str, bytes]]]] = []
        self._pending: list[Callback] = []
        self._lock = threading.Lock()
        self.max_pending = 0

    def produce(self, topic: str, value: bytes, key: bytes, headers: Any = None,
                on_delivery: Callback | None = None) -> None:
        with self._lock:
            if len(self._pending) >= self.max_queue:
                raise BufferError("queue full")
            self.records.append((topic, key, value, list(headers or [])))
            self._pending.append(on_delivery or (lambda e, m: None))
            self.max_pending = max(self.max_pending, len(self._pending))

    def poll(self, timeout: float = 0.0) -> int:
        if self.ack_interval and self.up and self._pending:
            time.sleep(self.ack_interval)
        with self._lock:
            if not self.up and self.fail_with is None:
                done: list[Callback] = []
            elif self.ack_interval:
                done, self._pending = self._pending[:1], self._pending[1:]
            else:
                done, self._pending = self._pending, []
        err = KafkaError(self.fail_with) if self.fail_with is not None else None
        for cb in done:
            cb(err, None)
        if not done and timeout:
            threading.Event().wait(min(timeout, 0.01))
        return len(done)

    def flush(self, timeout: float = -1) -> int:
        deadline = time.monotonic() + (timeout if timeout >= 0 else 60.0)
        for _ in range(1_000_000):
            self.poll(0)
            with self._lock:
                left = len(self._pending)
            if not left or not self.up or time.monotonic() >= deadline:
                return left
        return left

    def purge(self, in_queue: bool = True, in_flight: bool = True) -> None:
        with self._lock:
            done, self._pending = self._pending, []
        for cb in done:
            cb(KafkaError(KafkaError._PURGE_QUEUE), None)

    def __len__(self) -> int:
        return len(self._pending)


class ScriptedSource(Source):
    """Frames of a solid colour; `script` lists, per open, how many frames to give and then
    what happens: "end", "fail", or an exception to raise on open."""

    def __init__(self, script: list[tuple[int, str] | SourceError], live: bool = True,
                 fps: float | None = None, size: tuple[int, int] = (64, 48)) -> None:
        super().__init__("scripted:")
        self.script = list(script)
        self.live = live
        self._fps = fps
        self.size = size
        self.opens = 0
        self._left = 0
        self._then = "end"
        self._n = 0

    @property
    def name(self) -> str:
        return "scripted"

    @property
    def native_fps(self) -> float | None:
        return self._fps

    def open(self) -> None:
        step = self.script[min(self.opens, len(self.script) - 1)]
        self.opens += 1
        if isinstance(step, SourceError):
            raise step
        self._left, self._then = step

    def read(self) -> Frame | None:
        if self._left <= 0:
            if self._then == "fail":
                raise SourceError("scripted failure")
            return None
        self._left -= 1
        self._n += 1
        if self.live:
            time.sleep(0.001)  # a camera delivers frames at its own pace
        w, h = self.size
        return np.full((h, w, 3), self._n % 256, np.uint8)

    def close(self) -> None:
        pass
