"""/healthz and /readyz of a processor worker.

Liveness: a stuck agent (a hung inference, a deadlock) keeps the consumer's heartbeat going, so
Kafka keeps its partitions assigned to it; only `max.poll.interval` would notice, and only once the
stuck stream's buffer is full and the fetcher stops polling. So the worker watches itself: while it
has lag, its committed offsets must move; `stall_timeout_s` without progress turns /healthz 503 and
the orchestrator restarts it (the uncommitted frames are replayed by whoever gets the partitions).

Readiness: partitions of the frames topic are assigned (an idle extra replica is not ready).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from processors import metrics
from processors.lag import LagSnapshot


@dataclass(slots=True)
class Health:
    kind: str
    group: str
    stall_timeout_s: float
    model: str  # with kind, the label of this group's gauges
    last_progress: float = 0.0  # monotonic; 0 = not started
    last_committed: int = -1
    assigned: int = 0
    stalled_s: float = 0.0

    def observe(self, snap: LagSnapshot, assigned: int, now: float | None = None) -> None:
        """Called after each lag measurement."""
        now = time.monotonic() if now is None else now
        lagging = any(snap.lag.values())
        if (
            not self.last_progress
            or not lagging
            or snap.committed_total != self.last_committed
            or assigned != self.assigned
        ):
            self.last_progress = now
        self.last_committed = snap.committed_total
        self.assigned = assigned
        self.stalled_s = now - self.last_progress if lagging else 0.0
        metrics.STALLED_SECONDS.labels(self.kind, self.model).set(round(self.stalled_s, 1))

    def live(self) -> tuple[bool, dict[str, Any]]:
        ok = self.stalled_s <= self.stall_timeout_s
        doc = {
            "status": "ok" if ok else "stalled",
            "kind": self.kind,
            "group": self.group,
            "stalled_seconds": round(self.stalled_s, 1),
            "stall_timeout_seconds": self.stall_timeout_s,
        }
        return ok, doc

    def ready(self) -> tuple[bool, dict[str, Any]]:
        ok = self.assigned > 0
        doc = {"status": "ready" if ok else "unassigned", "kind": self.kind, "group": self.group,
               "partitions": self.assigned}  # fmt: skip
        return ok, doc
