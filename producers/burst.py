"""Log a repeating problem once per burst, not once per frame."""

from __future__ import annotations

import logging
import threading
import time


class BurstLog:
    """First occurrence logs at once; repeats within `quiet_s` are counted and summarised in
    the next line that gets through; `resolved()` logs how many happened when it clears."""

    def __init__(self, logger: logging.Logger, quiet_s: float = 10.0) -> None:
        self.logger = logger
        self.quiet_s = quiet_s
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._total: dict[str, int] = {}

    def problem(self, key: str, message: str, level: int = logging.WARNING) -> None:
        now = time.monotonic()
        with self._lock:
            self._total[key] = self._total.get(key, 0) + 1
            last = self._last.get(key)
            if last is not None and now - last < self.quiet_s:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return
            more = self._suppressed.pop(key, 0)
            self._last[key] = now
        suffix = f" (+{more} more like it in the last {self.quiet_s:g}s)" if more else ""
        self.logger.log(level, "%s%s", message, suffix)

    def pending(self, key: str) -> bool:
        """Whether `key` has unresolved problems (a lock-free read, for hot paths)."""
        return key in self._total

    def resolved(self, key: str, message: str) -> None:
        with self._lock:
            total = self._total.pop(key, 0)
            self._last.pop(key, None)
            self._suppressed.pop(key, None)
        if total:
            self.logger.info("%s after %d failures", message, total)
