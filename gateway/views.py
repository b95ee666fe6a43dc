"""What the REST routes read: one read-only view of the fan-out, built into response schemas
here and nowhere else (the routes never reach into the fan-out's tables)."""

from __future__ import annotations

import itertools
import time
from dataclasses import asdict

from prometheus_client import Counter

from gateway.fanout import Fanout
from gateway.intake import RateLimitedLog
from gateway.schemas import GatewayStats, KindView, StreamView

VIEW_ERRORS = Counter(
    "evi_gateway_view_errors_total", "Streams left out of a /api/streams answer (a bug, logged)"
)
_log = RateLimitedLog()
# /api/stats lists the first clients only: 10,000 views built on the event loop would stall
# every websocket for as long (`clients` counts them all).
MAX_CLIENT_LIST = 256

UNREGISTERED = {"source": "", "fps": 0.0, "width": 0, "height": 0, "status": "unknown",
                "message": "", "producer": "", "updated_ms": 0}


class GatewayView:
    """Reads the fan-out's state on the event loop, between two records: consistent as is."""

    __slots__ = ("_f",)

    def __init__(self, f: Fanout) -> None:
        self._f = f

    def stream_ids(self) -> list[str]:
        return sorted(set(self._f.registry) | set(self._f.streams))

    def known(self, stream: str) -> bool:
        return stream in self._f.registry or stream in self._f.streams

    def stream(self, stream: str) -> StreamView:
        f = self._f
        info = f.registry.get(stream)
        st = f.streams.get(stream)
        stats = st.stats.snapshot() if st is not None else None
        if info is not None:
            doc = asdict(info)
            doc.pop("schema", None)
            return StreamView(**doc, registered=True, stats=stats)
        kinds = st.stats.kinds() if st is not None else []
        return StreamView(stream=stream, registered=False, kinds=kinds, stats=stats,
                          **UNREGISTERED)

    def streams(self) -> list[StreamView]:
        """Every stream; one whose view cannot be built is left out, not a 500 for everyone."""
        out = []
        for stream in self.stream_ids():
            try:
                out.append(self.stream(stream))
            except ValueError as e:  # pydantic's ValidationError: a value off its schema
                VIEW_ERRORS.inc()
                _log.warning("view", "stream=%s left out of /api/streams: %s", stream, e)
        return out

    def kinds(self, since_ms: int) -> list[KindView]:
        return [self._f.monitor.kind_view(k, since_ms) for k in self._f.kinds()]

    def not_ready(self) -> str:
        return self._f.not_ready()

    def stats(self) -> GatewayStats:
        f = self._f
        subs = f.subscribers
        return GatewayStats(
            ready=not f.not_ready(), kafka=f.monitor.kafka_ok, kafka_error=f.monitor.error,
            kafka_checked_ms=f.monitor.checked_ms, uptime_s=round(time.time() - f.started, 1),
            kinds=f.kinds(), topics=dict(f.feed.partitions), streams=len(self.stream_ids()),
            records_read=f.feed.records, clients=len(subs),
            dropped_to_clients=subs.dropped_total,
            client_list=[s.view() for s in itertools.islice(subs.all.values(), MAX_CLIENT_LIST)],
        )
