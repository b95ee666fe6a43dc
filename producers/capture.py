"""One thread per stream: read the source, pace it, encode once, hand frames to the publisher.

A failing source is reopened with capped exponential backoff and jitter; live sources that end
are treated as failures, recorded sources end (or loop). Status changes go to the registry.
When the publisher's queue is full, `backpressure_policy` decides between staying current
(drop the oldest frame) and staying complete (wait for room).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from enum import Enum

from evi.topics import Topics
from evi.wire import FrameMeta, StreamInfo, frame_headers
from producers import metrics as m
from producers.encode import Encoder
from producers.metrics import ProducerMetrics
from producers.pacing import Backoff, Clock, RateGate
from producers.publisher import Backpressure, Pending, Publisher
from producers.registry import ENDED, ERROR, LIVE, RECONNECTING, Registry
from producers.settings import ProducerSettings, StreamConfig
from producers.sources import Source, SourceError, make_source
from producers.sources.url import redact

log = logging.getLogger("evi.producer.capture")

DEFAULT_FPS = 25.0  # a recorded source that does not say its frame rate


class Outcome(Enum):
    ENDED = "ended"  # the source has no more frames
    COUNT = "count"  # --count frames were sent
    STOPPED = "stopped"  # shutdown was asked
    FAILED = "failed"  # the source broke mid-stream


def backpressure_policy(source: Source, fps: float | None) -> Backpressure:
    """Live sources (cameras, URLs) and recorded ones paced in real time (native rate or an fps
    cap) drop their oldest pending frame: they stay current, and a camera must never be stalled.
    Recorded sources read as fast as possible (fps 0: files, images, sample) wait for room:
    reading a file later loses nothing, so every frame is delivered at the broker's pace."""
    if not source.live and fps == 0:
        return Backpressure.WAIT
    return Backpressure.DROP_OLDEST


def make_stream_source(cfg: StreamConfig, open_timeout_s: float) -> Source:
    return make_source(cfg.source, cfg.start, cfg.duration, cfg.width, cfg.height,
                       open_timeout_s)


class StreamWorker(threading.Thread):
    def __init__(
        self,
        cfg: StreamConfig,
        settings: ProducerSettings,
        publisher: Publisher,
        registry: Registry,
        metrics: ProducerMetrics,
        stop: threading.Event,
        source_factory: Callable[[StreamConfig, float], Source] = make_stream_source,
        rate: Callable[[float], float] | None = None,
    ) -> None:
        super().__init__(name=f"evi-capture-{cfg.id}", daemon=True)
        self.cfg = cfg
        self.settings = settings
        self.publisher = publisher
        self.registry = registry
        self.metrics = metrics
        self.stop = stop
        self.source_factory = source_factory
        # A load schedule (evi.demo): the stream's fps at a time.monotonic(); 0 = it has left.
        self.rate = rate
        topics = Topics(settings.topics)
        self.targets = tuple((k, topics.frames(k)) for k in cfg.kinds)
        self.encoder = Encoder(cfg.quality, cfg.width, cfg.height, settings.publisher.encoder)
        self.seq = 0
        self.error = ""  # set when the stream ended in error
        self.info = StreamInfo(
            stream=cfg.id, source=redact(cfg.source), kinds=list(cfg.kinds),
            fps=cfg.fps or 0.0, width=0, height=0, status=LIVE,
        )
        publisher.add_stream(cfg.id)
        metrics.init_stream(cfg.id, cfg.kinds)

    def _status(self, status: str, message: str = "", **changes: object) -> None:
        if status == self.info.status and message == self.info.message and not changes:
            return
        self.info = self.registry.update(self.info, status=status, message=message, **changes)

    def run(self) -> None:
        try:
            self._run()
        except Exception as e:  # a bug in one stream must not take the others down
            log.exception("stream=%s capture crashed", self.cfg.id)
            self.error = f"capture crashed: {e!r}"
            self._status(ERROR, self.error)

    def _fail(self, message: str) -> None:
        self.error = message
        log.error("stream=%s %s", self.cfg.id, message)
        self._status(ERROR, message)

    def _run(self) -> None:
        rc = self.settings.reconnect
        backoff = Backoff(rc.base_s, rc.cap_s)
        try:
            source = self.source_factory(self.cfg, rc.open_timeout_s)
        except SourceError as e:
            self._fail(str(e))
            return
        log.info("stream=%s source=%s %s backpressure=%s", self.cfg.id, redact(self.cfg.source),
                 "live" if source.live else "recorded",
                 backpressure_policy(source, self.cfg.fps).value)
        while not self.stop.is_set():
            try:
                source.open()
                outcome, problem = self._pump(source)
            except SourceError as e:
                if e.permanent:
                    self._fail(str(e))
                    return
                outcome, problem = Outcome.FAILED, str(e)
            finally:
                source.close()
            if outcome in (Outcome.COUNT, Outcome.STOPPED):
                break
            if outcome is Outcome.ENDED and not source.live:
                if self.cfg.loop:
                    continue
                break
            if outcome is Outcome.ENDED:
                problem = f"{redact(self.cfg.source)} stopped sending frames"
            if self.seq > 0 and self.info.status == LIVE:
                backoff.reset()
            if rc.max_attempts and backoff.attempts >= rc.max_attempts:
                self._fail(f"{problem}; gave up after {backoff.attempts} reconnects")
                return
            delay = backoff.next_delay()
            log.warning("stream=%s %s; reconnecting in %.1fs", self.cfg.id, problem, delay)
            self._status(RECONNECTING, problem)
            self.metrics.reconnects.labels(self.cfg.id).inc()
            if self.stop.wait(delay):
                break
        self._status(ENDED, "")

    def _fps(self, source: Source, cap: float | None) -> float:
        """The rate the registry shows: the cap, or the source's own rate when lower."""
        native, cap = source.native_fps or 0.0, cap or 0.0
        if cap and native and not source.live:
            return min(cap, native)
        return cap or native

    def _follow_schedule(self) -> float | None:
        """The schedule's new rate; while it is 0 the stream has left (the registry says ended)
        and this waits for it to come back. None when stop was set meanwhile."""
        assert self.rate is not None
        want = self.rate(time.monotonic())
        while want == 0:
            self._status(ENDED, "left (load schedule)")
            if self.stop.wait(0.2):
                return None
            want = self.rate(time.monotonic())
        return want

    def _pump(self, source: Source) -> tuple[Outcome, str]:
        """Send frames until the source ends, fails, the count is reached or stop is set."""
        cfg, stop = self.cfg, self.stop
        fps = cfg.fps
        clock = None
        if not source.live:
            clock = Clock(0.0 if fps == 0 else source.native_fps or DEFAULT_FPS, time.monotonic())
        gate = RateGate(fps or 0.0)
        policy = backpressure_policy(source, cfg.fps)
        captured = self.metrics.captured.labels(cfg.id)
        fps_gauge = self.metrics.capture_fps.labels(cfg.id)
        encode_hist = self.metrics.encode_seconds.labels(cfg.id)
        dropped_fps = self.metrics.dropped.labels(cfg.id, m.FPS)
        window_start, window_n = 0.0, 0  # capture fps: frames after the window's first frame
        while not stop.is_set():
            if cfg.count is not None and self.seq >= cfg.count:
                return Outcome.COUNT, ""
            if self.rate is not None and self.rate(time.monotonic()) != fps:
                fps = self._follow_schedule()
                if fps is None:
                    break
                if not source.live:  # as above, never faster than the source's own rate
                    native = source.native_fps or DEFAULT_FPS
                    clock = Clock(min(fps, native), time.monotonic())
                gate = RateGate(fps)
            if clock is not None and stop.wait(clock.delay(time.monotonic())):
                break
            frame = source.read()
            if frame is None:
                return Outcome.ENDED, ""
            now = time.monotonic()
            ts_ms = time.time_ns() // 1_000_000
            captured.inc()
            if clock is not None:
                clock.anchor(now)
            if window_n == 0:
                window_start = now  # not at open: a slow first frame is no frame rate
            window_n += 1
            if now - window_start >= 1.0:
                fps_gauge.set((window_n - 1) / (now - window_start))
                window_start, window_n = now, 1
            if not gate.admit(clock.tick() if clock is not None else now):
                dropped_fps.inc()
                continue
            out = self.encoder.resize(frame)
            jpeg = self.encoder.encode(out)
            encode_hist.observe(time.monotonic() - now)
            h, w = out.shape[:2]
            shown = self._fps(source, fps)
            if self.info.status != LIVE or (w, h, shown) != (self.info.width, self.info.height,
                                                             self.info.fps):
                self._status(LIVE, "", width=w, height=h, fps=shown)
            meta = FrameMeta(cfg.id, self.seq, ts_ms, w, h, self.settings.producer_id)
            self.publisher.submit(
                Pending(cfg.id, self.seq, jpeg, frame_headers(meta), self.targets, now),
                policy, stop,
            )
            self.seq += 1
        return Outcome.STOPPED, ""
