"""The pipeline over SASL_SSL on a broker that denies whatever no ACL allows.

`kafka.sh start` with EVI_KAFKA_SECURITY=sasl_ssl makes a CA and the broker's certificate,
SCRAM-SHA-512 users (admin, evi-producer, evi-processor, evi-gateway) and each principal's
prefixed ACLs (docs/security.md). Here a private broker of that kind carries frames from a
producer to a processor to a gateway, each service authenticated as its own principal, and each
principal is refused what its ACLs do not grant."""

from __future__ import annotations

import json
import socket
import ssl
import time
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.cimpl import NewTopic
from websockets.sync.client import connect

from evi.kafka import admin, ensure_topics, watermarks
from evi.settings import KafkaSettings, TopicSettings
from evi.topics import Topics
from tests.gateway.gw import TOKEN, bearer
from tests.gateway.wsclient import hello, recv_results
from tests.helpers import common, evi_process, free_port, http_ok, log_tail, wait_until
from tests.private_broker import PrivateBroker, private_broker
from tests.processors.kafka.util import processor

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(300)]

FRAMES = 30
TOPIC_DENIED = KafkaError.TOPIC_AUTHORIZATION_FAILED


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateBroker]:
    with private_broker(tmp_path_factory.mktemp("sasl") / "cache", security="sasl_ssl") as b:
        yield b


@pytest.fixture
def topics(broker: PrivateBroker) -> Topics:
    """A fresh prefix with the evi principals' ACLs, its topics created by the admin."""
    t = Topics(TopicSettings(prefix=f"t{uuid.uuid4().hex[:10]}", frame_partitions=2))
    broker.acls(t.prefix)
    assert len(ensure_topics(broker.kafka, t.specs(["face"]))) == 4
    return t


def delivery_errors(kafka: KafkaSettings, topic: str, **extra: object) -> list[int | None]:
    """Produce one record to `topic` as `kafka`'s principal; the delivery reports' error codes
    (None for a delivered record)."""
    errors: list[int | None] = []
    p = Producer(kafka.client_config() | {"message.timeout.ms": 15_000, **extra})
    p.produce(topic, b"x", b"k",
              on_delivery=lambda err, _: errors.append(err.code() if err else None))  # fmt: skip
    assert p.flush(30) == 0
    return errors


def create_error(kafka: KafkaSettings, topic: str) -> int | None:
    """Create `topic` as `kafka`'s principal; the error code (None when created)."""
    client = admin(kafka)  # referenced until the future is done
    try:
        client.create_topics([NewTopic(topic, 1)])[topic].result(15)
        return None
    except KafkaException as e:
        return int(e.args[0].code())


def test_broker_is_sasl_ssl_only_with_deny_by_default(broker: PrivateBroker) -> None:
    props = (broker.root / "kafka" / "server.properties").read_text()
    assert "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer" in props
    assert "allow.everyone.if.no.acl.found=false" in props
    assert "super.users=User:admin\n" in props
    assert f"listeners=SASL_SSL://127.0.0.1:{broker.port},CONTROLLER://" in props
    assert "PLAINTEXT://" not in props.replace("SASL_PLAINTEXT", "")
    # Passwords and keys are for the owner only.
    for f in [broker.root / "kafka" / "server.properties", *broker.security_dir.iterdir()]:
        assert f.stat().st_mode & 0o077 == 0, f

    # The broker's certificate is for 127.0.0.1 and signed by the project's CA.
    ctx = ssl.create_default_context(cafile=str(broker.ca_file))
    with socket.create_connection(("127.0.0.1", broker.port), timeout=5) as raw, \
            ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:  # fmt: skip
        assert tls.version() in ("TLSv1.2", "TLSv1.3")

    def lists(kafka: KafkaSettings) -> bool:
        try:
            admin(kafka).list_topics(timeout=4)
            return True
        except KafkaException:
            return False

    assert lists(broker.kafka)
    assert not lists(KafkaSettings(bootstrap_servers=broker.bootstrap))  # plaintext client
    assert not lists(broker.as_user("evi-gateway", password="not-the-password"))
    assert not lists(broker.as_user("admin").model_copy(update={"ssl_cafile": None}))  # no CA


def test_each_principal_is_refused_what_its_acls_do_not_grant(broker: PrivateBroker,
                                                              topics: Topics) -> None:  # fmt: skip
    producer, processor_, gateway = (broker.as_user(u) for u in
                                     ("evi-producer", "evi-processor", "evi-gateway"))  # fmt: skip
    frames, results = topics.frames("face"), topics.results("face")

    # What each may do (idempotent producers need no cluster ACL: WRITE on the topic is enough).
    assert delivery_errors(producer, frames, **{"enable.idempotence": True}) == [None]
    assert delivery_errors(producer, topics.streams, **{"enable.idempotence": True}) == [None]
    assert delivery_errors(processor_, results, **{"enable.idempotence": True}) == [None]
    assert delivery_errors(processor_, topics.dlq("face"), **{"enable.idempotence": True}) == [None]

    # The gateway reads; it never writes frames, results or the registry.
    for topic in (frames, results, topics.streams):
        assert delivery_errors(gateway, topic) == [TOPIC_DENIED], topic
    # The producer writes frames; it never reads results (it may not even see the topic), nor
    # creates topics.
    seen = admin(producer).list_topics(results, timeout=10).topics[results].error
    assert seen is not None and seen.code() == TOPIC_DENIED
    c = Consumer(producer.client_config() | {"group.id": f"{topics.prefix}-processor-face",
                                             "enable.auto.commit": False})  # fmt: skip
    try:
        c.assign([TopicPartition(results, p, 0) for p in (0, 1)])
        polled = [c.poll(0.5) for _ in range(8)]
        assert [m.value() for m in polled if m is not None and m.error() is None] == []
    finally:
        c.close()
    assert create_error(producer, f"{topics.prefix}.frames.cat") == TOPIC_DENIED
    # The processor writes results and dead letters, not frames or the registry; it creates
    # only its in-flight topic.
    assert delivery_errors(processor_, frames) == [TOPIC_DENIED]
    assert delivery_errors(processor_, topics.streams) == [TOPIC_DENIED]
    inflight = topics.inflight(topics.group("face"))
    assert ensure_topics(processor_, [topics.inflight_spec(topics.group("face"), 2)]) == [inflight]
    assert create_error(processor_, f"{topics.prefix}.results.cat") == TOPIC_DENIED

    # ACLs are per prefix: another prefix's frames are out of the producer's reach.
    other = Topics(TopicSettings(prefix=f"o{uuid.uuid4().hex[:10]}"))
    ensure_topics(broker.kafka, [other.specs(["face"])[1]])
    assert delivery_errors(producer, other.frames("face")) == [TOPIC_DENIED]
    # Nobody but the admin sees the topics of a prefix without ACLs.
    names = admin(gateway).list_topics(timeout=10).topics
    assert frames in names and other.frames("face") not in names


def api(port: int, path: str) -> urllib.request.Request:
    return urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=bearer())


def test_pipeline_end_to_end_each_service_as_its_own_principal(broker: PrivateBroker,
                                                               topics: Topics) -> None:  # fmt: skip
    port, web = free_port(), free_port()
    env = {user: broker.user_env(user) for user in ("evi-producer", "evi-processor", "evi-gateway")}
    with evi_process("sasl-gateway", "gateway", "--port", str(port), "--metrics-port",
                     str(free_port()), *common(broker.as_user("evi-gateway"), topics.prefix),
                     env=env["evi-gateway"] | {"EVI_FRAME_CACHE": str(FRAMES),
                                               "EVI_AUTH_TOKEN": TOKEN,
                                               "EVI_PROBE_INTERVAL_S": "0.5",
                                               "EVI_KINDS_INTERVAL_S": "1"}) as gw, \
            processor("sasl-processor", broker.as_user("evi-processor"), topics, web,
                      env=env["evi-processor"]):  # fmt: skip
        wait_until(lambda: gw.poll() is not None or http_ok(f"http://127.0.0.1:{port}/readyz"),
                   60, "gateway ready")  # fmt: skip
        assert gw.poll() is None, log_tail("sasl-gateway")
        with connect(f"ws://127.0.0.1:{port}/ws/streams/sec", max_size=8 << 20,
                     additional_headers=bearer()) as ws:
            assert hello(ws)["type"] == "hello"
            with evi_process("sasl-producer", "produce", "--source", "sample:", "--stream", "sec",
                             "--kind", "face", "--fps", "15", "--count", str(FRAMES),
                             *common(broker.as_user("evi-producer"), topics.prefix),
                             env=env["evi-producer"]) as prod:  # fmt: skip
                got = recv_results(ws, FRAMES, timeout=120)
                assert prod.wait(30) == 0, log_tail("sasl-producer")
        logs = "\n".join(f"--- {n}\n{log_tail(n)}" for n in
                         ("sasl-producer", "sasl-processor", "sasl-gateway"))  # fmt: skip
        assert sorted(int(h["seq"]) for h, _ in got) == list(range(FRAMES)), logs
        assert all(jpeg.startswith(b"\xff\xd8") for _, jpeg in got), "frames paired with results"
        with urllib.request.urlopen(api(port, "/api/streams"), timeout=5) as r:
            streams = json.load(r)
        assert [s["stream"] for s in streams] == ["sec"], streams  # the registry, read over TLS

        # The gateway's monitor lists and describes the processors' group and its offsets
        # (DESCRIBE on the group prefix): one member, nothing left to process.
        def kind_view() -> dict[str, Any]:
            with urllib.request.urlopen(api(port, "/api/kinds"), timeout=5) as r:
                return next((k for k in json.load(r) if k["kind"] == "face"), {})

        wait_until(lambda: kind_view().get("workers") == 1 and kind_view().get("lag") == 0, 30,
                   "the gateway's view of the processor group")  # fmt: skip
        assert [g["group"] for g in kind_view()["groups"]] == [topics.group("face")]
        # Neither the processor nor the gateway met a refusal on the way.
        for name in ("sasl-processor", "sasl-gateway"):
            text = log_tail(name, 100_000).lower()
            assert "authorization" not in text and "authentication" not in text, log_tail(name)
    # The processor's commits went through its group: nothing left to read.
    c = Consumer(broker.kafka.client_config() | {"group.id": topics.group("face")})
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            committed = c.committed([TopicPartition(topics.frames("face"), p) for p in (0, 1)], 10)
            ends = watermarks(c, topics.frames("face"), [0, 1])
            if all(tp.offset == ends[tp.partition][1] for tp in committed):
                break
            time.sleep(1)
        assert [tp.offset for tp in committed] == [ends[0][1], ends[1][1]]
    finally:
        c.close()

