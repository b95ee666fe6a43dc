"""Is the feed making progress? /readyz asks this besides "does Kafka answer".

A gateway whose Kafka thread died, or whose loop stopped taking the batches it is handed, still
answers HTTP and would look healthy while serving nothing; these timestamps catch both.
"""

from __future__ import annotations

import threading
import time


class FeedHealth:
    """Written by the feed thread (ticks, batches handed) and the loop (batches done)."""

    def __init__(self, stall_s: float) -> None:
        self.stall_s = stall_s
        self._lock = threading.Lock()
        now = time.monotonic()
        self.ticked = now  # the poll loop's last turn (also while Kafka is away)
        self.progress = now  # the loop's last dispatch step, or when batches started waiting
        self.outstanding = 0  # batches handed to the loop and not finished

    def tick(self) -> None:
        self.ticked = time.monotonic()

    def handed(self) -> None:
        with self._lock:
            if self.outstanding == 0:
                self.progress = time.monotonic()
            self.outstanding += 1

    def stepped(self) -> None:
        self.progress = time.monotonic()

    def done(self) -> None:
        with self._lock:
            self.outstanding = max(0, self.outstanding - 1)
            self.progress = time.monotonic()

    def problem(self, thread_alive: bool, now: float | None = None) -> str:
        """Why the feed is not making progress; "" while it is."""
        now = time.monotonic() if now is None else now
        if not thread_alive:
            return "kafka feed thread is not running"
        if now - self.ticked > self.stall_s:
            return f"kafka poll loop stalled for {now - self.ticked:.0f}s"
        if self.outstanding and now - self.progress > self.stall_s:
            return f"records not dispatched for {now - self.progress:.0f}s"
        return ""
