"""`evi produce` against the real broker: records, order, registry, exit codes."""

from __future__ import annotations

import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from evi.settings import KafkaSettings
from evi.topics import Topics
from producers.__main__ import main
from producers.sample import SampleClip
from producers.sample import main as sample_main
from tests.helpers import REPO, common, free_port, wait_until
from tests.producers.kafka_util import frames, read_topic, statuses

pytestmark = pytest.mark.kafka


def test_sample_source_reaches_topic_in_order(kafka: KafkaSettings, topics: Topics) -> None:
    code = main([
        "--source", "sample:", "--stream", "cam-a", "--count", "25", "--fps", "0",
        *common(kafka, topics.prefix),
    ])
    assert code == 0
    recs = read_topic(kafka, topics.frames("face"))
    by_stream = frames(recs)
    assert list(by_stream) == ["cam-a"]
    metas = by_stream["cam-a"]
    assert [m.seq for m in metas] == list(range(25))
    assert {(m.width, m.height) for m in metas} == {(640, 480)}
    assert all(r.key == b"cam-a" for r in recs)
    assert len({r.partition for r in recs}) == 1
    ts = [m.ts_ms for m in metas]
    assert ts == sorted(ts)
    producer_ids = {m.producer for m in metas}
    assert len(producer_ids) == 1 and producer_ids.pop().rsplit("-", 1)[1].isdigit()
    # The JPEG is the sample clip's frame: decode frame 3 and compare with the source.
    img = cv2.imdecode(np.frombuffer(recs[3].value, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None
    diff = np.abs(img.astype(int) - SampleClip().frame(3).astype(int)).mean()
    assert diff < 6.0
    history = statuses(kafka, topics.streams)["cam-a"]
    assert [s.status for s in history] == ["live", "ended"]
    assert history[0].width == 640 and history[0].kinds == ["face"]


def test_file_source_with_two_kinds_and_resize(
    kafka: KafkaSettings, topics: Topics, tmp_path: Path
) -> None:
    clip = tmp_path / "lobby.avi"
    assert sample_main(["--out", str(clip), "--frames", "20"]) == 0
    code = main([
        "--source", str(clip), "--kind", "face", "--kind", "person", "--fps", "0",
        "--width", "320", *common(kafka, topics.prefix),
    ])
    assert code == 0
    for kind in ("face", "person"):
        metas = frames(read_topic(kafka, topics.frames(kind)))["lobby"]
        assert [m.seq for m in metas] == list(range(20))
        assert {(m.width, m.height) for m in metas} == {(320, 240)}


def metric(text: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    head = f"{name}{{{want}}} " if labels else f"{name} "
    for line in text.splitlines():
        if line.startswith(head):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def scrape(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return str(r.read().decode())
    except OSError:
        return ""


def test_sigterm_flushes_marks_ended_and_metrics_are_served(
    kafka: KafkaSettings, topics: Topics
) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "producers", "--source", "sample:320x240", "--stream", "term",
         "--loop", "--fps", "30", "--metrics-port", str(port), *common(kafka, topics.prefix)],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}/metrics"

    def produced() -> float:
        return metric(scrape(url), "evi_producer_frames_produced_total", kind="face",
                      stream="term")

    try:
        wait_until(lambda: produced() >= 10, 30, "10 frames on /metrics")
        wait_until(lambda: metric(scrape(url), "evi_producer_capture_fps", stream="term") > 0, 10,
                   "a capture fps reading")
        text = scrape(url)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert proc.returncode == 0, err.decode()[-2000:]
    # Every metric the issue names, for this stream, with the values a running stream has.
    term = {"stream": "term"}
    assert metric(text, "evi_producer_frames_captured_total", **term) >= 10
    assert 10 <= metric(text, "evi_producer_capture_fps", **term) <= 20  # sample: 15 fps
    assert metric(text, "evi_producer_encode_seconds_count", **term) >= 10
    assert metric(text, "evi_producer_bytes_total", **term) > 10 * 5_000
    assert metric(text, "evi_producer_delivery_seconds_count") >= 10
    assert 'evi_producer_delivery_seconds_bucket{le="0.1"}' in text
    assert "evi_producer_source_reconnects_total{stream=\"term\"} 0.0" in text
    for reason in ("fps", "queue_full", "too_large", "delivery_failed", "shutdown"):
        assert metric(text, "evi_producer_frames_dropped_total", reason=reason, **term) == 0
    assert b"SIGTERM: flushing and stopping" in err
    seqs = [m.seq for m in frames(read_topic(kafka, topics.frames("face")))["term"]]
    assert len(seqs) >= 10 and seqs == list(range(len(seqs)))
    history = statuses(kafka, topics.streams)["term"]
    assert [s.status for s in history] == ["live", "ended"]
    assert history[0].fps == 15 and (history[0].width, history[0].height) == (320, 240)
