"""Results paired with their frames: each result waits (at most `pair_wait_ms`, and only while
no newer frame of its stream was seen) for the frame it was computed on, then goes to its
stream's viewers with that JPEG, untouched, or alone; results of a stream keep their order.

Frames are cached per stream only while someone views it, and let go once the stream is idle
or nobody views it any more. What one stream's flush raises costs that stream's waiting
results (counted), never the loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import Counter

from evi.wire import Result
from gateway import intake
from gateway.intake import BAD_RECORDS, RateLimitedLog
from gateway.pictures import AloneFrames
from gateway.protocol import pack_message, result_header
from gateway.settings import GatewaySettings
from gateway.streams import Streams, StreamState
from gateway.subscribers import Subscribers

UNPAIRED = Counter("evi_gateway_unpaired_results_total", "Results sent without their frame")
IDLE_CACHE_S = 30.0  # frames kept for a stream that sends no more are let go after this
SWEEP_EVERY_S = 5.0


class Pairing:
    def __init__(self, s: GatewaySettings, streams: Streams, subscribers: Subscribers,
                 alone: AloneFrames, publish: Callable[[str, bytes], None],
                 room: Callable[[], bool], later: Callable[[], None]) -> None:
        self.frame_cache = s.frame_cache
        self.wait_s = s.pair_wait_ms / 1000
        self.streams = streams
        self.subscribers = subscribers
        self.alone = alone
        self.publish = publish
        self.room = room  # may this loop step publish more?
        self.later = later  # flush again in a later step (the writers run first)
        self.cached: set[str] = set()  # streams with frames in their cache
        self.pending: set[str] = set()  # streams with results waiting for their frames
        self.next_sweep = 0.0
        self._log = RateLimitedLog()

    def keep_frame(self, stream: str, st: StreamState, seq: int, ts_ms: int,
                   jpeg: bytes) -> None:
        """A frame someone will want with its result (a replay of the same seq and capture time
        keeps the one held)."""
        held = st.frames.get(seq)
        if held is None or held[0] != ts_ms:
            st.frames.pop(seq, None)
            st.frames[seq] = (ts_ms, jpeg)
            while len(st.frames) > self.frame_cache:
                st.frames.popitem(last=False)
            self.cached.add(stream)

    def add(self, stream: str, st: StreamState, r: Result, now: float) -> None:
        st.pending.append((now, r))
        self.pending.add(stream)
        self.flush(stream, st, now)

    def flush(self, stream: str, st: StreamState, now: float) -> None:
        """Send a stream's waiting results, in order, as their frames arrive or their wait ends."""
        queue = st.pending
        while queue:
            if not self.room():  # let the writers run first; the rest goes out next step
                self.later()
                return
            t, r = queue[0]
            held = st.frames.get(r.seq)
            if held is not None and held[0] == r.ts_ms:
                jpeg = held[1]
            elif now - t < self.wait_s and st.newest_ts <= r.ts_ms:
                return  # its frame may still come (no newer frame has been seen)
            else:
                jpeg = b""
                UNPAIRED.inc()
            queue.popleft()
            self.send(stream, st, r, jpeg)
        self.pending.discard(stream)

    def send(self, stream: str, st: StreamState, r: Result, jpeg: bytes) -> None:
        if self.subscribers.wanted(stream):
            self.publish(stream, pack_message(result_header(r, bool(jpeg)), jpeg))
            if jpeg:
                self.alone.paired(st.pictures, r.ts_ms)

    def flush_all(self, results_topics: str) -> None:
        now = time.monotonic()
        for stream in list(self.pending):
            st = self.streams.get(stream)
            if st is None:
                self.pending.discard(stream)
                continue
            try:
                self.flush(stream, st, now)
            except Exception as e:  # a bug: lose this stream's waiting results, not the loop
                st.pending.clear()
                self.pending.discard(stream)
                BAD_RECORDS.labels(results_topics, intake.ERROR).inc()
                self._log.warning("flush", "flushing stream=%s raised %r", stream, e, exc=True)

    def sweep(self) -> None:
        """Let go of idle streams, and of cached frames nobody will be sent."""
        now = time.monotonic()
        if now < self.next_sweep:
            return
        self.next_sweep = now + SWEEP_EVERY_S
        self.streams.sweep(now)
        for stream in list(self.cached):
            st = self.streams.get(stream)
            if st is None:
                self.cached.discard(stream)
            elif not st.pending and (
                now - st.seen > IDLE_CACHE_S or not self.subscribers.wanted(stream)
            ):
                st.frames.clear()
                self.cached.discard(stream)

    def evicted(self, stream: str, st: StreamState) -> None:
        """A stream let go (idle, or past max_streams): its waiting results leave unpaired."""
        while st.pending:
            _, r = st.pending.popleft()
            held = st.frames.get(r.seq)
            jpeg = held[1] if held is not None and held[0] == r.ts_ms else b""
            if not jpeg:
                UNPAIRED.inc()
            self.send(stream, st, r, jpeg)
        self.pending.discard(stream)
        self.cached.discard(stream)
