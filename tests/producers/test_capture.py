"""Capture threads, reconnects and statuses through runner.run with fake Kafka (no broker)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

import producers.runner as runner
from evi.wire import decode_stream_info, parse_frame
from producers.metrics import ProducerMetrics
from producers.settings import ProducerSettings, StreamConfig
from producers.sources.base import Frame, Source, SourceError
from tests.producers.fakes import FakeProducer, ScriptedSource


class Harness:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(runner, "ensure_topics", lambda *a, **k: [])
        self.producers: list[FakeProducer] = []
        self.sources: dict[str, Source] = {}
        self.metrics = ProducerMetrics()
        self.broker: dict[str, Any] = {}  # FakeProducer options: a slow or small broker

    def factory(self, config: dict[str, Any]) -> FakeProducer:
        p = FakeProducer(config, **self.broker)
        self.producers.append(p)
        return p

    def source(self, cfg: StreamConfig, timeout: float) -> Source:
        return self.sources[cfg.id]

    def run(self, streams: list[dict[str, Any]], stop: threading.Event | None = None,
            **extra: Any) -> int:
        extra.setdefault("reconnect", {"base_s": 0.01, "cap_s": 0.05})
        settings = ProducerSettings(streams=streams, **extra)
        return runner.run(settings, stop or threading.Event(), self.metrics, self.factory,
                          self.source)

    @property
    def frames(self) -> FakeProducer:
        return next(p for p in self.producers if not p.config["client.id"].endswith("registry"))

    @property
    def registry(self) -> FakeProducer:
        return next(p for p in self.producers if p.config["client.id"].endswith("registry"))

    def seqs(self, stream: str, topic: str | None = None) -> list[int]:
        return [parse_frame(k, v, h).seq for t, k, v, h in self.frames.records
                if k == stream.encode() and (topic is None or t == topic)]

    def statuses(self, stream: str) -> list[tuple[str, str]]:
        out = []
        for _, key, value, _ in self.registry.records:
            info = decode_stream_info(value)
            if key == stream.encode():
                out.append((info.status, info.message))
        return out

    def value(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0


@pytest.fixture
def h(monkeypatch: pytest.MonkeyPatch) -> Harness:
    return Harness(monkeypatch)


def test_live_source_that_fails_is_reconnected_and_seq_stays_contiguous(h: Harness) -> None:
    h.sources["cam"] = ScriptedSource(
        [(5, "fail"), SourceError("connection refused"), (3, "end"), (50, "end")])
    code = h.run([{"id": "cam", "source": "x", "count": 12}])
    assert code == 0
    assert h.seqs("cam") == list(range(12))
    assert h.statuses("cam") == [
        ("live", ""), ("reconnecting", "scripted failure"),
        ("reconnecting", "connection refused"), ("live", ""),
        ("reconnecting", "x stopped sending frames"), ("live", ""), ("ended", ""),
    ]
    assert h.value("evi_producer_source_reconnects_total", stream="cam") == 3
    assert h.value("evi_producer_frames_produced_total", stream="cam", kind="face") == 12


def test_permanent_error_marks_stream_error_while_others_keep_running(h: Harness) -> None:
    h.sources["bad"] = ScriptedSource([SourceError("bad.mp4 is not a video: convert it", True)])
    h.sources["good"] = ScriptedSource([(6, "end")], live=False, fps=0)
    code = h.run([{"id": "bad", "source": "x"}, {"id": "good", "source": "y"}])
    assert code == 1
    assert h.statuses("bad") == [("error", "bad.mp4 is not a video: convert it")]
    assert h.seqs("good") == list(range(6))
    assert h.statuses("good") == [("live", ""), ("ended", "")]


def test_recorded_source_loops_and_feeds_every_kind(h: Harness) -> None:
    h.sources["clip"] = ScriptedSource([(3, "end")], live=False, fps=1000)
    code = h.run([{"id": "clip", "source": "x", "loop": True, "count": 8,
                   "kinds": ["face", "person"]}], topics={"prefix": "p"})
    assert code == 0
    assert h.seqs("clip", "p.frames.face") == list(range(8))
    assert h.seqs("clip", "p.frames.person") == list(range(8))
    assert h.sources["clip"].opens == 3  # type: ignore[attr-defined]
    assert h.statuses("clip") == [("live", ""), ("ended", "")]


def test_gives_up_after_max_attempts_with_a_clear_message(h: Harness) -> None:
    h.sources["cam"] = ScriptedSource([SourceError("rtsp://cam did not answer")])
    code = h.run([{"id": "cam", "source": "x"}], reconnect={"base_s": 0.01, "max_attempts": 3})
    assert code == 1
    assert h.statuses("cam")[-1] == (
        "error", "rtsp://cam did not answer; gave up after 3 reconnects")


def test_stop_event_ends_live_streams_and_marks_them_ended(h: Harness) -> None:
    h.sources["a"] = ScriptedSource([(10**6, "end")], size=(32, 24))
    h.sources["b"] = ScriptedSource([(10**6, "end")], size=(32, 24))
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    t0 = time.monotonic()
    # A queue of 64 absorbs the scheduling hiccups of a loaded 2-core machine (b runs at ~1 kHz),
    # so every frame captured before the stop is delivered: exit code 0.
    code = h.run([{"id": "a", "source": "x", "fps": 50}, {"id": "b", "source": "y"}], stop,
                 publisher={"queue_frames": 64})
    assert time.monotonic() - t0 < 5
    assert code == 0
    for s in ("a", "b"):
        assert h.statuses(s)[-1] == ("ended", "")
        assert h.seqs(s) == list(range(len(h.seqs(s))))
    assert 10 <= len(h.seqs("a")) <= 40  # capped at 50 fps for 0.5 s
    assert len(h.seqs("b")) > len(h.seqs("a"))
    assert h.value("evi_producer_frames_dropped_total", stream="a", reason="fps") > 0


def test_frame_larger_than_topic_limit_is_dropped_and_named(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    h.sources["big"] = ScriptedSource([(3, "end")], live=False, fps=0, size=(512, 512))
    h.sources["ok"] = ScriptedSource([(3, "end")], live=False, fps=0)
    code = h.run([{"id": "big", "source": "x", "quality": 100, "width": 4000, "height": 4000},
                  {"id": "ok", "source": "y"}], topics={"max_message_bytes": 64 << 10})
    assert code == 1
    assert h.seqs("big") == [] and h.seqs("ok") == [0, 1, 2]
    assert h.value("evi_producer_frames_dropped_total", stream="big", reason="too_large") == 3
    lines = [r.getMessage() for r in caplog.records if "over the topic limit" in r.getMessage()]
    assert len(lines) == 1 and "stream=big" in lines[0] and "lower --quality" in lines[0]


class SlowSource(ScriptedSource):
    """A camera that takes 0.4 s per frame."""

    def read(self) -> Frame | None:
        time.sleep(0.4)
        return super().read()


def test_a_slow_camera_does_not_stall_the_other_streams(h: Harness) -> None:
    h.sources["slow"] = SlowSource([(10**6, "end")])
    h.sources["fast"] = ScriptedSource([(10**6, "end")])
    stop = threading.Event()
    threading.Timer(1.0, stop.set).start()
    assert h.run([{"id": "slow", "source": "x"}, {"id": "fast", "source": "y"}], stop,
                 publisher={"queue_frames": 64}) == 0  # 64: see test_stop_event_ends_live_...
    assert 1 <= len(h.seqs("slow")) <= 4
    assert len(h.seqs("fast")) > 100


def test_burst_log_logs_once_per_burst_and_summarises(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from producers.burst import BurstLog

    burst = BurstLog(logging.getLogger("t.burst"), quiet_s=0.2)
    with caplog.at_level(logging.INFO, "t.burst"):
        for _ in range(50):
            burst.problem("k", "delivery failed")
        time.sleep(0.25)
        burst.problem("k", "delivery failed")
        burst.resolved("k", "delivering again")
        burst.resolved("k", "delivering again")  # nothing pending: silent
    assert [r.getMessage() for r in caplog.records] == [
        "delivery failed",
        "delivery failed (+49 more like it in the last 0.2s)",
        "delivering again after 51 failures",
    ]


def test_backpressure_policy_per_source_kind() -> None:
    from producers.capture import backpressure_policy
    from producers.publisher import Backpressure

    live, recorded = ScriptedSource([], live=True), ScriptedSource([], live=False, fps=25)
    assert backpressure_policy(recorded, 0) is Backpressure.WAIT  # file/images/sample, fps 0
    assert backpressure_policy(recorded, None) is Backpressure.DROP_OLDEST  # native rate
    assert backpressure_policy(recorded, 10) is Backpressure.DROP_OLDEST  # capped rate
    for fps in (0, None, 10):
        assert backpressure_policy(live, fps) is Backpressure.DROP_OLDEST  # camera/URL


def test_slow_broker_recorded_fps0_delivers_all_while_live_drops_oldest(h: Harness) -> None:
    # One ack per 2 ms and room for 4 records in librdkafka: slower than both sources.
    h.broker = {"max_queue": 4, "ack_interval": 0.002}
    h.sources["clip"] = ScriptedSource([(400, "end")], live=False, fps=30)
    h.sources["cam"] = ScriptedSource([(400, "end")], live=True)
    code = h.run([{"id": "clip", "source": "x", "fps": 0},
                  {"id": "cam", "source": "y", "count": 400}],
                 publisher={"queue_frames": 2})
    assert code == 1  # the camera dropped frames
    assert h.seqs("clip") == list(range(400))
    assert h.value("evi_producer_frames_dropped_total", stream="clip", reason="queue_full") == 0
    cam = h.seqs("cam")
    cam_drops = h.value("evi_producer_frames_dropped_total", stream="cam", reason="queue_full")
    assert cam_drops > 50 and len(cam) + cam_drops == 400
    assert cam == sorted(cam) and cam[-1] == 399  # drop-oldest: the newest frame got through
    assert h.statuses("clip")[-1] == ("ended", "") and h.statuses("cam")[-1] == ("ended", "")


def test_stop_ends_a_recorded_stream_waiting_on_a_down_broker_at_once(h: Harness) -> None:
    h.broker = {"max_queue": 2, "up": False}
    h.sources["clip"] = ScriptedSource([(10**6, "end")], live=False, fps=0)
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    t0 = time.monotonic()
    code = h.run([{"id": "clip", "source": "x", "fps": 0}], stop,
                 publisher={"queue_frames": 2, "flush_timeout_s": 0.5, "block_timeout_s": 60})
    took = time.monotonic() - t0
    assert took < 3.0  # not the 60 s wait, nor the runner's join timeout
    assert code == 1
    assert h.value("evi_producer_frames_dropped_total", stream="clip", reason="shutdown") >= 1
    assert h.statuses("clip")[-1] == ("ended", "")


class SlowFirstFrame(ScriptedSource):
    """A recorded source whose first frame takes 0.8 s (a decoder warming up)."""

    def read(self) -> Frame | None:
        if self._n == 0:
            time.sleep(0.8)
        return super().read()


def test_native_rate_starts_at_the_first_frame_without_a_catch_up_burst(h: Harness) -> None:
    h.sources["clip"] = SlowFirstFrame([(10**6, "end")], live=False, fps=20)
    stop = threading.Event()
    threading.Timer(1.8, stop.set).start()  # 0.8 s first frame + 1 s at 20 fps
    assert h.run([{"id": "clip", "source": "x"}], stop) == 0
    n = len(h.seqs("clip"))
    assert 15 <= n <= 25, n  # ~21; bursting to catch up the first 0.8 s would give ~37


def test_one_process_follows_a_load_schedule_streams_join_speed_up_and_leave(
    h: Harness,
) -> None:
    from evi.demo import Schedule, Step

    schedule = Schedule((Step(0, 1, 10.0), Step(1.0, 2, 10.0), Step(2.0, 1, 30.0)), 10.0)
    for s in ("a", "b"):
        h.sources[s] = ScriptedSource([(10**6, "end")], live=False, fps=100)
    stop = threading.Event()
    threading.Timer(3.0, stop.set).start()
    settings = ProducerSettings(streams=[{"id": s, "source": "x", "fps": 30} for s in "ab"])
    assert runner.run(settings, stop, h.metrics, h.factory, h.source, schedule) == 0
    a, b = h.seqs("a"), h.seqs("b")
    assert a == list(range(len(a))) and b == list(range(len(b)))  # contiguous per stream
    assert 40 <= len(a) <= 60, len(a)  # ~20 at 10 fps for 2 s, then ~30 at 30 fps
    assert 7 <= len(b) <= 13, len(b)  # ~10: there from 1 s to 2 s only
    assert ("ended", "left (load schedule)") in h.statuses("b")
    assert ("ended", "left (load schedule)") in h.statuses("b")[:2]  # absent until it joined
