"""Bounded state keyed by names from the data: streams, registry entries, models per kind.

Stream ids, model names and registry keys are chosen by whoever writes to Kafka, so every table
here has a cap and the streams also an idle time; a flood of new names lets go of the least
recently seen, never of the streams that are active, and memory stays flat.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from prometheus_client import Counter

from evi.wire import Result, StreamInfo
from gateway.pictures import Pictures
from gateway.stats import StreamStats

EVICTED = Counter(
    "evi_gateway_streams_evicted_total",
    "Per-stream state let go: idle for stream_idle_s, or past max_streams / max_registry",
    ["table", "reason"],
)
V = TypeVar("V")
OTHER_MODEL = "other"  # the label results of models past max_models per kind are counted under


@dataclass(slots=True, eq=False)
class StreamState:
    """What the gateway holds for one stream."""

    stats: StreamStats
    seen: float  # monotonic time of its last frame or result
    # Recent frames, seq -> (ts_ms, jpeg), kept only while some client wants the stream.
    frames: OrderedDict[int, tuple[int, bytes]] = field(default_factory=OrderedDict)
    newest_ts: int = 0  # newest frame capture time seen (cached or not)
    pending: deque[tuple[float, Result]] = field(default_factory=deque)  # waiting for frames
    pictures: Pictures = field(default_factory=Pictures)  # what viewers last got of it


class _ByStream(Generic[V]):
    """A table keyed by stream id, oldest first (OrderedDict order), read like a mapping."""

    _all: OrderedDict[str, V]

    def __len__(self) -> int:
        return len(self._all)

    def __contains__(self, stream: object) -> bool:
        return stream in self._all

    def __iter__(self) -> Iterator[str]:
        return iter(self._all)

    def get(self, stream: str) -> V | None:
        return self._all.get(stream)


class Streams(_ByStream[StreamState]):
    """Per-stream state, least recently seen first; capped and swept for idle streams."""

    def __init__(
        self, max_streams: int, idle_s: float, window: int, max_models: int,
        on_evict: Callable[[str, StreamState], None],
    ) -> None:  # fmt: skip
        self.max_streams = max_streams
        self.idle_s = idle_s
        self.window = window
        self.max_models = max_models
        self.on_evict = on_evict
        self._all: OrderedDict[str, StreamState] = OrderedDict()

    def touch(self, stream: str, now: float) -> StreamState:
        """The stream's state (made if new), marked as seen now."""
        st = self._all.get(stream)
        if st is None:
            while len(self._all) >= self.max_streams:
                self._evict("cap")
            st = self._all[stream] = StreamState(StreamStats(self.window, self.max_models), now)
        else:
            self._all.move_to_end(stream)
            st.seen = now
        return st

    def remove(self, stream: str) -> StreamState | None:
        return self._all.pop(stream, None)

    def sweep(self, now: float) -> int:
        """Let go of streams not seen for idle_s; O(streams let go), the oldest are first."""
        n = 0
        while self._all:
            st = next(iter(self._all.values()))
            if now - st.seen <= self.idle_s:
                break
            self._evict("idle")
            n += 1
        return n

    def _evict(self, reason: str) -> None:
        stream, st = self._all.popitem(last=False)
        EVICTED.labels("streams", reason).inc()
        self.on_evict(stream, st)


class Registry(_ByStream[StreamInfo]):
    """Entries of the compacted registry topic, capped; the one updated longest ago goes first."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._all: OrderedDict[str, StreamInfo] = OrderedDict()

    def put(self, info: StreamInfo) -> None:
        self._all.pop(info.stream, None)
        while len(self._all) >= self.cap:
            self._all.popitem(last=False)
            EVICTED.labels("registry", "cap").inc()
        self._all[info.stream] = info

    def pop(self, stream: str) -> StreamInfo | None:
        return self._all.pop(stream, None)


class KindCounts:
    """Frames per kind and results per kind and model, for the kinds panel's rates. Kinds come
    from topic names (evi's); model names from the data, so at most `max_models` per kind."""

    def __init__(self, max_models: int) -> None:
        self.max_models = max_models
        self.frames: dict[str, int] = {}
        self.results: dict[str, dict[str, int]] = {}

    def frame(self, kind: str) -> None:
        self.frames[kind] = self.frames.get(kind, 0) + 1

    def result(self, kind: str, model: str) -> None:
        by_model = self.results.setdefault(kind, {})
        if model not in by_model and len(by_model) >= self.max_models:
            model = OTHER_MODEL
        by_model[model] = by_model.get(model, 0) + 1
