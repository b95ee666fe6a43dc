"""docker-compose.yml on a real Docker engine: `up --build` from this repository offline, every
service healthy, a websocket client sees the sample stream's results, a SIGKILLed processor
loses no (stream, seq), two replicas split the partitions, `down -v` leaves nothing behind.

A project of its own (`-p evi-test-…`), host ports of its own, its own broker in a container:
the dev broker on 9092 is not touched. The engine comes from .ci/system-deps
(deploy/docker/engine.sh); without one the module fails in CI (CI=true), naming the reason,
and is skipped elsewhere with that reason.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient
from websockets.sync.client import connect

from evi.settings import KafkaSettings, TopicSettings
from evi.topics import Topics
from evi.wire import H_SEQ, H_STREAM, decode_result
from tests.compose.engine import Stack, engine_problem
from tests.gateway.wsclient import hello, recv_results
from tests.helpers import LOGS, consume_all, http_ok, wait_until

pytestmark = [pytest.mark.compose, pytest.mark.timeout(2400)]

SERVICES = ("kafka", "topics", "producer", "processor-face", "gateway")
STREAM = "sample-1"
GROUP = "evi-processor-face"
TOPICS = Topics(TopicSettings())
BUILD_TIMEOUT = 1800  # a cold build: base packages, the locked wheels, models, INT8, Kafka jars
timings: dict[str, float] = {}


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    problem = engine_problem()
    if problem:
        if os.environ.get("CI") == "true":
            pytest.fail(f"tests/compose cannot run: {problem}")
        pytest.skip(f"no usable Docker engine: {problem}")
    s = Stack()
    try:
        t0 = time.monotonic()
        s.run("build", *SERVICES, timeout=BUILD_TIMEOUT)
        timings["build_s"] = time.monotonic() - t0
        t0 = time.monotonic()
        s.run("up", "-d", "--build", "--wait", "--wait-timeout", "300", *SERVICES, timeout=420)
        timings["up_s"] = time.monotonic() - t0
        timings["up_at"] = time.monotonic()
        yield s
    finally:
        if s.leftovers():
            s.run("logs", "--no-color", "--tail", "200", timeout=60, check=False)
        s.run("down", "-v", "--remove-orphans", "--timeout", "30", timeout=180, check=False)
        LOGS.mkdir(parents=True, exist_ok=True)
        (LOGS / f"{s.project}.log").write_text("\n".join(s.log))
        s.env_file.unlink(missing_ok=True)
        s.env_file.with_suffix(".ca.pem").unlink(missing_ok=True)
        print(f"\ncompose stack timings: {timings}")


def kafka_of(s: Stack) -> KafkaSettings:
    return KafkaSettings(bootstrap_servers=s.bootstrap)


def test_every_service_is_healthy_and_only_localhost_is_published(stack: Stack) -> None:
    health = stack.health()
    assert health == {"kafka": "healthy", "topics": "exited", "producer": "healthy",
                      "processor-face": "healthy", "gateway": "healthy"}, health
    r = stack.run("ps", "--format", "{{.Service}} {{.Publishers}}", timeout=30)
    published = [line for line in r.stdout.splitlines() if "->" in line or "0.0.0.0" in line]
    assert published, r.stdout
    for line in published:
        assert "0.0.0.0" not in line and "::" not in line, line
    assert http_ok(f"http://127.0.0.1:{stack.gateway_port}/readyz")


def test_the_gateway_runs_its_own_image_without_the_inference_packages(stack: Stack) -> None:
    probe = ("import importlib.util as u; print(' '.join(m for m in ('openvino', 'faust', 'cv2', "
             "'skimage', 'nncf', 'fastapi', 'confluent_kafka') if u.find_spec(m)))")
    r = stack.run("exec", "-T", "gateway", "python", "-c", probe, timeout=60)
    assert r.stdout.split() == ["fastapi", "confluent_kafka"], r.stdout
    r = stack.run("exec", "-T", "processor-face", "python", "-c", probe, timeout=60)
    assert {"openvino", "faust", "cv2"} <= set(r.stdout.split()), r.stdout
    r = stack.run("ps", "--format", "{{.Service}} {{.Image}}", timeout=30)
    images = dict(line.split() for line in r.stdout.splitlines() if line.strip())
    assert images["gateway"] == "evi-gateway:local", images
    assert images["processor-face"] == "evi:local", images


def test_a_websocket_client_sees_results_of_the_sample_stream(stack: Stack) -> None:
    url = f"ws://127.0.0.1:{stack.gateway_port}/ws/streams/{STREAM}"
    with connect(url, open_timeout=10, max_size=16 << 20,
                 additional_headers={"Authorization": f"Bearer {stack.token}"}) as ws:
        hello(ws)
        got = recv_results(ws, 5, timeout=180)
        timings["first_result_after_up_s"] = time.monotonic() - timings["up_at"]
    assert len(got) == 5, f"{len(got)} results in 180 s"
    assert {h["stream"] for h, _ in got} == {STREAM}
    assert {h["kind"] for h, _ in got} >= {"face"}
    seqs = [int(h["seq"]) for h, _ in got if h["kind"] == "face"]
    assert seqs == sorted(seqs), "one stream's results arrive in order"


def frame_keys(kafka: KafkaSettings) -> set[tuple[str, int]]:
    out = set()
    for m in consume_all(kafka, TOPICS.frames("face"), timeout=60, require_all=True):
        h = {k: v for k, v in (m.headers() or [])}
        out.add((h[H_STREAM].decode(), int(h[H_SEQ])))
    return out


def result_keys(kafka: KafkaSettings) -> list[tuple[str, int]]:
    out = []
    for m in consume_all(kafka, TOPICS.results("face"), timeout=60, require_all=True):
        r = decode_result(m.value())
        out.append((r.stream, r.seq))
    return out


def group_lag(kafka: KafkaSettings) -> int:
    """Frames of the face topic the processors' group has not committed yet."""
    c = Consumer(kafka.client_config() | {"group.id": GROUP, "enable.auto.commit": False})
    try:
        topic = TOPICS.frames("face")
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        committed = c.committed([TopicPartition(topic, p) for p in parts], timeout=10)
        lag = 0
        for tp in committed:
            _, high = c.get_watermark_offsets(tp, timeout=10)
            lag += high - max(tp.offset, 0)
        return lag
    finally:
        c.close()


def test_a_killed_processor_loses_no_frame(stack: Stack) -> None:
    """SIGKILL mid-stream (no drain, no commit), start again: every (stream, seq) produced has
    a result (at least once; duplicates are the redelivered, uncommitted tail)."""
    kafka = kafka_of(stack)
    time.sleep(5)  # mid-stream: the processor has work in flight
    stack.run("kill", "processor-face", timeout=60)
    assert stack.health()["processor-face"] == "exited"
    time.sleep(3)  # frames keep coming while it is down
    stack.run("start", "processor-face", timeout=60)
    wait_until(lambda: stack.health()["processor-face"] == "healthy", 180,
               "processor-face healthy again", step=2)
    time.sleep(10)
    stack.run("stop", "producer", timeout=90)
    wait_until(lambda: group_lag(kafka) == 0, 240, "the face group to commit every frame",
               step=2)
    frames = frame_keys(kafka)
    results = result_keys(kafka)
    missing = frames - set(results)
    timings.update(frames=len(frames), results=len(results),
                   duplicates=len(results) - len(set(results)), missing=len(missing))
    assert len(frames) >= 30, f"only {len(frames)} frames produced"
    assert not missing, (f"{len(missing)} of {len(frames)} frames have no result: "
                         f"{sorted(missing)[:10]}")
    assert set(results) <= frames, "a result for a frame nobody produced"
    stack.run("start", "producer", timeout=60)


def assignments(kafka: KafkaSettings) -> dict[str, set[int]]:
    """member id -> the face frames partitions it holds."""
    admin = AdminClient(kafka.client_config())
    (desc,) = [f.result() for f in admin.describe_consumer_groups([GROUP]).values()]
    topic = TOPICS.frames("face")
    return {m.member_id: {tp.partition for tp in m.assignment.topic_partitions
                          if tp.topic == topic} for m in desc.members}


def test_two_replicas_split_the_partitions(stack: Stack) -> None:
    kafka = kafka_of(stack)
    stack.run("up", "-d", "--no-recreate", "--scale", "processor-face=2", "--wait",
              "--wait-timeout", "240", "processor-face", timeout=300)
    assert stack.health()["processor-face"] == "healthy,healthy"
    partitions = set(range(12))

    def split() -> bool:
        held = assignments(kafka)
        return (len(held) == 2 and all(held.values())
                and set().union(*held.values()) == partitions)

    wait_until(split, 180, "two members of evi-processor-face holding all 12 partitions", step=2)
    a, b = assignments(kafka).values()
    assert not a & b, (a, b)
    assert a | b == partitions


def test_down_leaves_nothing_behind(stack: Stack) -> None:
    stack.run("down", "-v", "--remove-orphans", "--timeout", "30", timeout=180)
    assert stack.leftovers() == []


