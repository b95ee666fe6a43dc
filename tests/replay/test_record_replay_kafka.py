"""`evi record` and `evi replay` on the real broker: exact windows, byte-identical frames, the
documented header changes, pacing against the original timeline, topic-to-topic copies."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from evi.settings import KafkaSettings
from evi.topics import Topics
from evi.wire import parse_frame
from producers.clip import read_clip
from producers.record import format_time
from tests.helpers import REPO
from tests.producers.kafka_util import statuses
from tests.replay.util import (
    KCAT,
    common,
    end_offsets,
    evi,
    jpeg,
    kafka_tool,
    kcat,
    produce,
    read_all,
    write_clip,
)

pytestmark = pytest.mark.kafka

CHANGED = {"evi-stream", "evi-ts", "evi-producer"}  # docs/replay.md: what a replay rewrites


def test_record_then_replay_at_max_speed_is_byte_identical(
    kafka: KafkaSettings, topics: Topics, tmp_path: Path
) -> None:
    produce(kafka, topics.prefix, ["cam-a", "cam-b"], count=30, fps=0)
    frames_topic = topics.frames("face")
    orig = [r for r in read_all(kafka, frames_topic) if r.key == b"cam-a"]
    assert [r.meta().seq for r in orig] == list(range(30))
    clip = tmp_path / "cam-a.evi"
    since, until = orig[0].ts_ms, orig[-1].ts_ms + 1
    rec = evi("record", "--kind", "face", "--stream", "cam-a", "--since", format_time(since),
              "--until", format_time(until), "--out", str(clip), *common(kafka, topics.prefix))
    assert rec.returncode == 0, rec.stderr
    assert rec.stdout.startswith(f"recorded 30 frames (cam-a=30) from {frames_topic} between")
    meta, saved = read_clip(clip)
    assert meta["topic"] == frames_topic and meta["kind"] == "face"
    assert [(r.ts_ms, r.key, list(r.headers), r.value) for r in saved] == [
        (r.ts_ms, r.key, r.headers, r.value) for r in orig]

    started_ms = int(time.time() * 1000)
    rep = evi("replay", str(clip), "--stream", "cam-a-replay", "--speed", "max",
              *common(kafka, topics.prefix))
    assert rep.returncode == 0, rep.stderr
    assert "replayed 30 frames (cam-a->cam-a-replay)" in rep.stdout
    again = [r for r in read_all(kafka, frames_topic) if r.key == b"cam-a-replay"]
    assert len(again) == 30
    ts_new = []
    for o, n in zip(orig, again, strict=True):
        assert n.value == o.value, "the JPEG bytes are untouched"
        ho, hn = dict(o.headers), dict(n.headers)
        assert [k for k, _ in n.headers] == [k for k, _ in o.headers], "same headers, same order"
        assert {k for k in ho if ho[k] != hn[k]} == CHANGED
        assert hn["evi-stream"] == b"cam-a-replay"
        producer = (hn["evi-producer"] or b"").decode()
        assert producer.startswith("replay-") and producer.endswith("/" + ho["evi-producer"]
                                                                    .decode())  # type: ignore
        m = n.meta()
        assert m.seq == o.meta().seq and n.ts_ms == m.ts_ms >= started_ms
        ts_new.append(m.ts_ms)
    assert ts_new == sorted(ts_new) and ts_new[-1] <= int(time.time() * 1000)
    history = statuses(kafka, topics.streams)["cam-a-replay"]
    assert [h.status for h in history] == ["live", "ended"]
    assert history[0].source == "replay:cam-a.evi" and history[0].kinds == ["face"]
    assert (history[0].width, history[0].height) == (640, 480)


def test_record_window_is_kafkas_window(
    kafka: KafkaSettings, topics: Topics, tmp_path: Path
) -> None:
    produce(kafka, topics.prefix, ["cam-w"], count=40, fps=40)
    frames_topic = topics.frames("face")
    orig = read_all(kafka, frames_topic)
    since, until = orig[10].ts_ms, orig[30].ts_ms
    assert orig[9].ts_ms < since and orig[29].ts_ms < until, "distinct times at the cut points"
    clip = tmp_path / "w.evi"
    rec = evi("record", "--kind", "face", "--since", format_time(since), "--until",
              str(until), "--out", str(clip), *common(kafka, topics.prefix))
    assert rec.returncode == 0, rec.stderr
    _, saved = read_clip(clip)
    assert [parse_frame(r.key, r.value, r.headers).seq for r in saved] == list(range(10, 30))
    # Kafka's own offset-for-time lookup (GetOffsetShell) starts the window where we did.
    out = kafka_tool("kafka-get-offsets", "--bootstrap-server", kafka.bootstrap_servers,
                     "--topic", frames_topic, "--time", str(since))
    assert out.returncode == 0, out.stderr
    starts = {int(p): int(o) for _, p, o in (ln.split(":") for ln in out.stdout.split())}
    assert starts[orig[0].partition] == orig[10].offset
    if KCAT:
        got = kcat("-b", kafka.bootstrap_servers, "-C", "-t", frames_topic, "-o", f"s@{since}",
                   "-o", f"e@{until}", "-e", "-q", "-f", "%h\n")
        assert got.returncode == 0, got.stderr
        seqs = [dict(kv.split("=", 1) for kv in ln.split(","))["evi-seq"]
                for ln in got.stdout.splitlines()]
        assert seqs == [str(i) for i in range(10, 30)]


def arrivals(kafka: KafkaSettings, topic: str, n: int, args: list[str], timeout: float = 60
             ) -> tuple[list[float], list[int], list[bytes], subprocess.CompletedProcess[str]]:
    """Run `evi replay <args>` and note when each of its `n` records reaches a consumer."""
    c = Consumer(kafka.client_config() | {"group.id": f"t-arr-{uuid.uuid4().hex[:8]}",
                                          "fetch.wait.max.ms": 5, "enable.auto.commit": False})
    ends = end_offsets(kafka, topic)
    c.assign([TopicPartition(topic, p, off) for p, off in ends.items()])
    c.poll(0.5)  # fetching (nothing yet) before the first record is sent
    proc = subprocess.Popen([sys.executable, "-m", "evi.cli", "replay", *args], cwd=REPO,
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    times: list[float] = []
    stamps: list[int] = []
    values: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while len(times) < n and time.monotonic() < deadline:
            m = c.poll(0.05)
            if m is None or m.error():
                continue
            times.append(time.monotonic())
            stamps.append(parse_frame(m.key(), m.value(), m.headers()).ts_ms)
            values.append(m.value() or b"")
        out, err = proc.communicate(timeout=30)
    finally:
        c.close()
        if proc.poll() is None:
            proc.kill()
    return times, stamps, values, subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.mark.parametrize("factor", [1.0, 2.0])
def test_replay_follows_the_original_timeline(
    kafka: KafkaSettings, topics: Topics, tmp_path: Path, factor: float
) -> None:
    # 10 s of irregular spacing (bursts, a 1.5 s gap), as a camera with hiccups records it.
    gaps = [40, 40, 40, 200, 80, 120, 40, 1500, 60, 100] * 4 + [100] * 15
    t, times = 1_764_070_000_000, []
    for g in gaps:
        times.append(t)
        t += g
    assert 9_500 <= times[-1] - times[0] <= 10_500
    clip = tmp_path / "t.evi"
    write_clip(clip, {"cam-t": times})
    got, stamps, values, proc = arrivals(
        kafka, topics.frames("face"), len(times),
        [str(clip), "--speed", str(factor), *common(kafka, topics.prefix)])
    assert proc.returncode == 0, proc.stderr
    assert len(got) == len(times)
    assert values == [jpeg(i) for i in range(len(times))]
    want = [(x - times[0]) / 1000 / factor for x in times]
    seen = [x - got[0] for x in got]
    span = want[-1]
    assert abs(seen[-1] - span) <= 0.05 * span, f"took {seen[-1]:.2f}s for {span:.2f}s"
    worst = max(abs(s - w) for s, w in zip(seen, want, strict=True))
    assert worst <= 0.05 * span, f"a frame was {worst:.3f}s off the original timeline"
    # The rebased capture times keep the original spacing (divided by the speed) exactly.
    assert [s - stamps[0] for s in stamps] == [round((x - times[0]) / factor) for x in times]


def test_topic_to_topic_copy_of_a_window_with_pacing(
    kafka: KafkaSettings, topics: Topics
) -> None:
    produce(kafka, topics.prefix, ["cam-c"], count=40, fps=20)
    frames_topic = topics.frames("face")
    orig = read_all(kafka, frames_topic)
    since, until = orig[10].ts_ms, orig[30].ts_ms
    args = ["--from-topic", frames_topic, "--since", format_time(since), "--until",
            format_time(until), "--speed", "1.0", *common(kafka, topics.prefix)]
    same = evi("replay", *args)
    assert same.returncode == 2 and "give --to-stream" in same.stderr
    got, stamps, values, proc = arrivals(kafka, frames_topic, 20, [*args, "--to-stream",
                                                                   "cam-c-copy"])
    assert proc.returncode == 0, proc.stderr
    assert values == [r.value for r in orig[10:30]]
    copied = [r for r in read_all(kafka, frames_topic) if r.key == b"cam-c-copy"]
    assert [r.meta().seq for r in copied] == list(range(10, 30))
    capture = [r.meta().ts_ms for r in orig[10:30]]
    assert [s - stamps[0] for s in stamps] == [x - capture[0] for x in capture]
    span = (capture[-1] - capture[0]) / 1000
    assert abs((got[-1] - got[0]) - span) <= max(0.05 * span, 0.1)
    history = statuses(kafka, topics.streams)["cam-c-copy"]
    assert [h.status for h in history] == ["live", "ended"]
    assert history[0].source == f"replay:{frames_topic}@{format_time(since)}"


def test_keep_ts_preserves_capture_and_record_timestamps(
    kafka: KafkaSettings, topics: Topics, tmp_path: Path
) -> None:
    # Recent: records past the topic's retention (1 h) would be deleted at the broker's next
    # retention check (every 60 s), which once fell between the replay and the read.
    t0 = int(time.time() * 1000) - 300_000
    times = [t0 + 25 * i for i in range(12)]
    clip = tmp_path / "k.evi"
    recs = write_clip(clip, {"cam-k": times}, extra=[("trace-id", b"t-1"), ("nullable", None)])
    out = evi("replay", str(clip), "--keep-ts", "--speed", "max", *common(kafka, topics.prefix))
    assert out.returncode == 0, out.stderr
    got = read_all(kafka, topics.frames("face"))
    assert [r.ts_ms for r in got] == times
    for o, n in zip(recs, got, strict=True):
        assert n.value == o.value and n.key == o.key
        diff = {k for (k, v), (_, w) in zip(o.headers, n.headers, strict=True) if v != w}
        assert diff == {"evi-producer"}
        assert ("nullable", None) in n.headers and ("trace-id", b"t-1") in n.headers


def test_streams_of_one_clip_share_one_timeline(
    kafka: KafkaSettings, topics: Topics, tmp_path: Path
) -> None:
    t0 = 1_764_070_000_000
    x = [t0 + 100 * i for i in range(10)]
    y = [t0 + 50 + 100 * i for i in range(10)]
    clip = tmp_path / "two.evi"
    write_clip(clip, {"cam-x": x, "cam-y": y})  # stream after stream, as recorded
    out = evi("replay", str(clip), "--speed", "10", *common(kafka, topics.prefix))
    assert out.returncode == 0, out.stderr
    assert "replayed 20 frames (cam-x->cam-x, cam-y->cam-y)" in out.stdout
    got = {(r.meta().stream, r.meta().seq): r.meta().ts_ms
           for r in read_all(kafka, topics.frames("face"))}
    first = min(got.values())
    want = {("cam-x", i): (t - t0) // 10 for i, t in enumerate(x)}
    want |= {("cam-y", i): (t - t0) // 10 for i, t in enumerate(y)}
    assert {k: v - first for k, v in got.items()} == want, "interleaved by capture time"
