"""The docs/replay.md recipes with Kafka's own CLI (bin/kafka-*) and kcat, on the real broker with
real processors: reset a live group to a time, run another model from a time in its own group,
inspect results and frames with console tools, and retention from settings."""

from __future__ import annotations

import json
import re
import subprocess
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import pytest

from evi.kafka import ensure_topics, group_lag
from evi.settings import KafkaSettings, TopicSettings
from evi.topics import Topics
from evi.wire import Result, decode_result, parse_frame
from producers.record import format_time
from tests.helpers import REPO, evi_process, log_tail, wait_until
from tests.replay.util import (
    KCAT,
    Rec,
    common,
    end_offsets,
    evi,
    kafka_tool,
    kcat,
    produce,
    read_all,
)

pytestmark = pytest.mark.kafka

FRAMES = 30  # per stream
Key = tuple[str, int]  # (stream, seq)


@dataclass
class Footage:
    """Two streams' frames, processed once by the live group, which is stopped again."""

    topics: Topics
    frames: list[Rec]
    live_results: int

    @property
    def group(self) -> str:
        return self.topics.group("face")

    def at_or_after(self, t_ms: int) -> list[Key]:
        """What a group reset to `t_ms` must process: on each partition, from the first record
        whose timestamp is at or after it (Kafka's offsets-for-times), to the end."""
        out: list[Key] = []
        for p in sorted({r.partition for r in self.frames}):
            recs = [r for r in self.frames if r.partition == p]
            first = next((i for i, r in enumerate(recs) if r.ts_ms >= t_ms), len(recs))
            out += [(r.meta().stream, r.meta().seq) for r in recs[first:]]
        return out

    def cut(self, seq: int = 12) -> int:
        """The time of one of cam-a's frames."""
        return next(r.ts_ms for r in self.frames if r.key == b"cam-a" and r.meta().seq == seq)


def results_after(kafka: KafkaSettings, topic: str, before: dict[int, int]) -> list[Result]:
    return [decode_result(r.value) for r in read_all(kafka, topic)
            if r.offset >= before.get(r.partition, 0)]


def count_after(kafka: KafkaSettings, topic: str, before: dict[int, int]) -> int:
    return sum(end - before.get(p, 0) for p, end in end_offsets(kafka, topic).items())


def processor(name: str, kafka: KafkaSettings, prefix: str, *extra: str
              ) -> AbstractContextManager[subprocess.Popen[bytes]]:
    return evi_process(name, "process", "--kind", "face", "--web-port", "0",
                       *common(kafka, prefix), *extra)


@pytest.fixture(scope="module")
def footage(kafka: KafkaSettings) -> Footage:
    topics = Topics(TopicSettings(prefix=f"t{uuid.uuid4().hex[:10]}", frame_partitions=4))
    ensure_topics(kafka, topics.specs(["face"]))
    produce(kafka, topics.prefix, ["cam-a", "cam-b"], count=FRAMES, fps=15)
    frames = read_all(kafka, topics.frames("face"))
    assert len(frames) == 2 * FRAMES
    results = topics.results("face")
    with processor("replay-live", kafka, topics.prefix):
        wait_for(lambda: count_after(kafka, results, {}) >= 2 * FRAMES, 180,
                 "the live group's results", "replay-live")
    return Footage(topics, frames, count_after(kafka, results, {}))


def wait_for(check: Callable[[], bool], timeout: float, what: str, *logs: str) -> None:
    """wait_until, with the end of the processors' logs when it times out."""
    try:
        wait_until(check, timeout, what)
    except TimeoutError as e:
        raise AssertionError("\n".join([str(e), *(log_tail(name) for name in logs)])) from None


def group_tool(kafka: KafkaSettings, *args: str) -> str:
    out = kafka_tool("kafka-consumer-groups", "--bootstrap-server", kafka.bootstrap_servers,
                     *args)
    assert out.returncode == 0, out.stderr
    return out.stdout


def new_offsets(table: str, group: str) -> dict[int, int]:
    """partition -> NEW-OFFSET from a `--reset-offsets` table (it also prints warnings, e.g. for
    a partition with nothing that recent: "Falling back to latest known offset")."""
    rows = [ln.split() for ln in table.splitlines()]
    return {int(r[2]): int(r[3]) for r in rows if len(r) == 4 and r[0] == group}


def test_reset_live_group_reprocesses_exactly_the_window(
    kafka: KafkaSettings, footage: Footage
) -> None:
    topics, frames_topic = footage.topics, footage.topics.frames("face")
    results = topics.results("face")
    state = group_tool(kafka, "--describe", "--group", footage.group, "--state")
    assert "Empty" in state, state  # stopped: Kafka only resets a group with no members
    t = footage.cut()
    want = footage.at_or_after(t)
    assert 0 < len(want) < 2 * FRAMES
    rounds = [
        (["--to-datetime", format_time(t)], want),
        # Kafka's other reset forms: the last 5 frames of every partition, then one offset.
        (["--shift-by", "-5"], [k for p in sorted({r.partition for r in footage.frames})
                                for k in [(r.meta().stream, r.meta().seq) for r in footage.frames
                                          if r.partition == p][-5:]]),
    ]
    for i, (how, expected) in enumerate(rounds):
        before = end_offsets(kafka, results)
        if i == 1:  # --shift-by moves from the committed offsets: first back to the end
            group_tool(kafka, "--group", footage.group, "--topic", frames_topic,
                       "--reset-offsets", "--to-latest", "--execute")
        table = group_tool(kafka, "--group", footage.group, "--topic", frames_topic,
                           "--reset-offsets", *how, "--execute")
        starts = new_offsets(table, footage.group)
        firsts = {p: min(r.offset for r in footage.frames if r.partition == p
                         and (r.meta().stream, r.meta().seq) in expected)
                  for p in {r.partition for r in footage.frames}}
        assert {p: starts[p] for p in firsts} == firsts, table
        with processor(f"replay-reset-{i}", kafka, topics.prefix):
            def done(b: dict[int, int] = before, n: int = len(expected)) -> bool:
                return count_after(kafka, results, b) >= n

            wait_for(done, 180, "results after the reset", f"replay-reset-{i}")
            time.sleep(2.0)  # and nothing more than the window
        again = results_after(kafka, results, before)
        assert sorted((r.stream, r.seq) for r in again) == sorted(expected), how
        assert {r.model for r in again} == {"blazeface-short"}
        lag = group_lag(kafka, footage.group, frames_topic)
        assert sum(p.lag for p in lag) == 0


MODEL_FILE = "face:\n  family: blazeface\n  name: {name}\n  variant: full\n"


def test_other_model_from_a_time_in_its_own_group(
    kafka: KafkaSettings, footage: Footage, tmp_path: Path
) -> None:
    topics, frames_topic = footage.topics, footage.topics.frames("face")
    results = topics.results("face")
    live_before = {p.partition: p.committed for p in group_lag(kafka, footage.group,
                                                                frames_topic)}
    t, u = footage.cut(12), footage.cut(20)
    want = sorted(footage.at_or_after(t))
    window = sorted(set(want) - set(footage.at_or_after(u)))
    assert 0 < len(window) < len(want)
    for name in ("full-from", "full-cli", "full-window"):
        (tmp_path / f"{name}.yaml").write_text(MODEL_FILE.format(name=name))
    # (c) exactly [t, u), copied under another prefix: results land in its own results topic.
    other = Topics(TopicSettings(prefix=f"{topics.prefix}w"))
    copy = evi("replay", "--from-topic", frames_topic, "--since", format_time(t), "--until",
               format_time(u), "--kind", "face", "--speed", "max",
               *common(kafka, other.prefix))
    assert copy.returncode == 0, copy.stderr
    # (a) the processor's own --from; (b) Kafka's CLI seeds a new group, then a plain start.
    group_a, group_b = f"{topics.prefix}-rerun-a", f"{topics.prefix}-rerun-b"
    table = group_tool(kafka, "--group", group_b, "--topic", frames_topic, "--reset-offsets",
                       "--to-datetime", format_time(t), "--execute")
    assert new_offsets(table, group_b)
    before = end_offsets(kafka, results)
    with (
        processor("replay-model-a", kafka, topics.prefix, "--models-file",
                  str(tmp_path / "full-from.yaml"), "--group-id", group_a, "--from",
                  format_time(t)),
        processor("replay-model-b", kafka, topics.prefix, "--models-file",
                  str(tmp_path / "full-cli.yaml"), "--group-id", group_b),
        processor("replay-model-c", kafka, other.prefix, "--models-file",
                  str(tmp_path / "full-window.yaml")),
    ):
        wait_for(lambda: count_after(kafka, results, before) >= 2 * len(want)
                 and count_after(kafka, other.results("face"), {}) >= len(window), 240,
                 "results of the three reruns", "replay-model-a", "replay-model-b",
                 "replay-model-c")
        time.sleep(2.0)
    new = results_after(kafka, results, before)
    for model in ("full-from", "full-cli"):
        assert sorted((r.stream, r.seq) for r in new if r.model == model) == want, model
    assert {r.model for r in new} == {"full-from", "full-cli"}
    live_after = {p.partition: p.committed for p in group_lag(kafka, footage.group,
                                                               frames_topic)}
    assert live_after == live_before, "the live group was not touched"
    separate = results_after(kafka, other.results("face"), {})
    assert sorted((r.stream, r.seq) for r in separate) == window
    assert {r.model for r in separate} == {"full-window"}


def test_console_tools_show_readable_results_and_frame_headers(
    kafka: KafkaSettings, footage: Footage, tmp_path: Path
) -> None:
    topics, b = footage.topics, kafka.bootstrap_servers
    n = sum(end_offsets(kafka, topics.results("face")).values())
    out = kafka_tool("kafka-console-consumer", "--bootstrap-server", b, "--topic",
                     topics.results("face"), "--from-beginning", "--max-messages", str(n),
                     "--timeout-ms", "20000", "--formatter-property", "print.key=true")
    lines = out.stdout.splitlines()
    assert len(lines) == n, out.stderr
    seen = set()
    for line in lines:
        key, value = line.split("\t", 1)
        doc = json.loads(value)
        assert doc["stream"] == key and decode_result(value.encode()).seq == doc["seq"]
        seen.add((key, doc["seq"], doc["model"]))
    keys = {(r.meta().stream, r.meta().seq) for r in footage.frames}
    assert {(s, q) for s, q, m in seen if m == "blazeface-short"} == keys
    out = kafka_tool("kafka-console-consumer", "--bootstrap-server", b, "--topic",
                     topics.frames("face"), "--from-beginning", "--max-messages",
                     str(len(footage.frames)), "--timeout-ms", "20000",
                     "--formatter-property", "print.headers=true",
                     "--formatter-property", "print.key=true",
                     "--formatter-property", "print.value=false")
    dumped = [ln.split("\t") for ln in out.stdout.splitlines()]
    assert len(dumped) == len(footage.frames), out.stderr
    for headers, key in dumped:
        h = dict(kv.split(":", 1) for kv in headers.split(","))
        assert h["evi-stream"] == key and h["content-type"] == "image/jpeg"
        assert (key, int(h["evi-seq"])) in keys
    if not KCAT:
        return
    got = kcat("-b", b, "-C", "-t", topics.results("face"), "-e", "-q", "-f", "%k\t%s\n")
    assert len(got.stdout.splitlines()) == n
    # Dump one frame's JPEG to a file and publish it again with its headers, as in the docs.
    r = footage.frames[7]
    jpg = tmp_path / "frame.jpg"
    raw = subprocess.run([str(KCAT), "-b", b, "-C", "-t", topics.frames("face"), "-p",
                          str(r.partition), "-o", str(r.offset), "-c", "1", "-e", "-q", "-f",
                          "%s"], capture_output=True, timeout=60, check=True).stdout
    jpg.write_bytes(raw)
    assert raw == r.value
    m = r.meta()
    heads = [f"{k}={(v or b'').decode()}" for k, v in r.headers if k != "evi-stream"]
    flags = [x for h in [*heads, "evi-stream=cam-kcat"] for x in ("-H", h)]
    put = kcat("-b", b, "-P", "-t", topics.frames("face"), "-k", "cam-kcat", *flags, str(jpg))
    assert put.returncode == 0, put.stderr
    back = [x for x in read_all(kafka, topics.frames("face")) if x.key == b"cam-kcat"]
    assert len(back) == 1 and back[0].value == r.value
    assert parse_frame(back[0].key, back[0].value, back[0].headers).seq == m.seq


def test_frames_retention_comes_from_settings(kafka: KafkaSettings) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    env = {"EVI_TOPICS__PREFIX": prefix, "EVI_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
           "EVI_TOPICS__FRAMES_RETENTION_MS": "7200000",
           "EVI_TOPICS__FRAMES_RETENTION_BYTES": "2147483648"}
    made = evi("kafka", "topics", "--kind", "face", env=env)
    assert made.returncode == 0, made.stderr
    assert f"{prefix}.frames.face\t12 partitions\tcreated" in made.stdout

    def describe() -> dict[str, str]:
        out = subprocess.run(
            [str(REPO / "deploy/kafka/kafka.sh"), "tool", "configs", "--bootstrap-server",
             kafka.bootstrap_servers, "--describe", "--entity-type", "topics", "--entity-name",
             f"{prefix}.frames.face"], capture_output=True, text=True, timeout=120, check=True)
        return dict(re.findall(r"^\s+([a-z.]+)=(\S+) ", out.stdout, re.M))

    cfg = describe()
    assert cfg["retention.ms"] == "7200000" and cfg["retention.bytes"] == "2147483648"
    assert cfg["segment.ms"] == "600000"
    # An existing topic keeps its config; the documented alter command changes it.
    subprocess.run(
        [str(REPO / "deploy/kafka/kafka.sh"), "tool", "configs", "--bootstrap-server",
         kafka.bootstrap_servers, "--alter", "--entity-type", "topics", "--entity-name",
         f"{prefix}.frames.face", "--add-config", "retention.ms=86400000"],
        capture_output=True, text=True, timeout=120, check=True)
    assert describe()["retention.ms"] == "86400000"
    bad = evi("kafka", "topics", env={**env, "EVI_TOPICS__FRAMES_RETENTION_MS": "1000"})
    assert bad.returncode == 2 and "frames_retention_ms" in bad.stderr
