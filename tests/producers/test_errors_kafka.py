"""Bad input against the real broker: each bad stream gets one clear line naming it and the fix,
its error status in the registry, and the good streams deliver every frame."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest

from evi.kafka import ensure_topics
from evi.settings import KafkaSettings, load
from evi.topics import Topics, TopicSpec
from producers.metrics import ProducerMetrics
from producers.runner import run
from producers.settings import ProducerSettings
from tests.helpers import free_port
from tests.producers.kafka_util import frames, read_topic, statuses

pytestmark = pytest.mark.kafka


def errors_of(caplog: pytest.LogCaptureFixture, stream: str) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno >= logging.ERROR and r.name == "evi.producer.capture"
            and r.getMessage().startswith(f"stream={stream} ")]


def test_bad_sources_fail_alone_with_one_clear_line_each(
    kafka: KafkaSettings, topics: Topics, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    notes = tmp_path / "notes.mp4"
    notes.write_text("this is not a video\n" * 100)
    settings = load(
        ProducerSettings, kafka={"bootstrap_servers": kafka.bootstrap_servers},
        topics=topics.settings.model_dump(),
        reconnect={"base_s": 0.05, "cap_s": 0.2, "max_attempts": 2, "open_timeout_s": 1.0},
        streams=[
            {"id": "notvideo", "source": str(notes)},
            {"id": "nocam", "source": "/dev/video97"},
            {"id": "deadurl", "source": f"http://127.0.0.1:{free_port()}/cam.mjpg"},
            {"id": "noimages", "source": str(tmp_path / "*.png")},
            {"id": "good", "source": "sample:320x240x30", "fps": 0},
        ],
    )
    with caplog.at_level(logging.INFO):
        code = run(settings, threading.Event(), ProducerMetrics())
    assert code == 1
    fixes = {
        "notvideo": "notes.mp4 is not a video OpenCV/FFmpeg can read: convert it",
        "nocam": "camera /dev/video97 does not exist: list cameras with `ls /dev/video*`",
        "deadurl": "did not answer with a video stream within 1s: check the URL",
        "noimages": "no images match",
    }
    reg = statuses(kafka, topics.streams)
    for stream, fix in fixes.items():
        (line,) = errors_of(caplog, stream)  # one line, at the moment it fails
        assert fix in line, line
        assert "\n" not in line
        assert reg[stream][-1].status == "error" and fix in reg[stream][-1].message
    assert "gave up after 2 reconnects" in reg["deadurl"][-1].message
    assert [i.status for i in reg["deadurl"]] == ["reconnecting", "error"]  # changes only
    assert [m.seq for m in frames(read_topic(kafka, topics.frames("face")))["good"]] == list(
        range(30))
    assert [i.status for i in reg["good"]] == ["live", "ended"]


def test_frames_over_the_brokers_topic_limit_are_counted_and_named(
    kafka: KafkaSettings, topics: Topics, caplog: pytest.LogCaptureFixture
) -> None:
    # The person topic already exists with a 64 KiB limit (smaller than the producer's 4 MiB
    # setting): the broker refuses the big frames; the face topic and the small stream go on.
    person = topics.frames("person")
    ensure_topics(kafka, [TopicSpec(person, 2, {"max.message.bytes": str(64 << 10)})])
    settings = load(
        ProducerSettings, kafka={"bootstrap_servers": kafka.bootstrap_servers},
        topics=topics.settings.model_dump(),
        streams=[{"id": "big", "source": "sample:1280x720x6", "fps": 0, "quality": 100,
                  "kinds": ["face", "person"]},
                 {"id": "small", "source": "sample:320x240x6", "fps": 0, "quality": 50,
                  "kinds": ["face", "person"]}],
    )
    metrics = ProducerMetrics()
    with caplog.at_level(logging.INFO):
        code = run(settings, threading.Event(), metrics)
    assert code == 1
    face = frames(read_topic(kafka, topics.frames("face")))
    assert [m.seq for m in face["big"]] == list(range(6))
    assert [m.seq for m in face["small"]] == list(range(6))
    person_frames = frames(read_topic(kafka, person))
    assert list(person_frames) == ["small"] and [m.seq for m in person_frames["small"]] == list(
        range(6))
    assert metrics.dropped_count("big", "too_large") == 6
    assert any(f"topic {person} accepts messages up to 65536 bytes" in r.getMessage()
               for r in caplog.records)  # said once at start
    lines = [r.getMessage() for r in caplog.records if "over the limit of" in r.getMessage()]
    assert len(lines) == 1  # once per burst, not once per frame
    assert lines[0].startswith("stream=big seq=") and f"over the limit of {person}" in lines[0]
    assert "lower --quality or --width/--height" in lines[0]
