"""REST contract on the real broker: status codes, response schemas, filters, errors, auth, CORS.

The app is served in-process by uvicorn (its lifespan runs the real Kafka fan-out)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from confluent_kafka import Consumer, Message, TopicPartition
from prometheus_client import REGISTRY
from pydantic import SecretStr
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from evi.kafka import ensure_topics
from evi.settings import KafkaSettings, TopicSettings
from evi.topics import Topics
from gateway.app import create_app
from gateway.protocol import unpack_message
from gateway.schemas import GatewayStats, KindView, StreamView
from gateway.settings import GatewaySettings
from tests.gateway.feed import Feeder
from tests.gateway.gw import TOKEN, bearer
from tests.gateway.server import serve, ws_url
from tests.helpers import wait_until

pytestmark = pytest.mark.kafka


def settings(kafka: KafkaSettings, topics: Topics, **kw: Any) -> GatewaySettings:
    kw.setdefault("auth_token", SecretStr(TOKEN))
    return GatewaySettings(kafka=kafka, topics=topics.settings, probe_interval_s=0.3,
                           kinds_interval_s=0.5, metadata_refresh_s=1, **kw)


def ready(c: httpx.Client) -> None:
    wait_until(lambda: c.get("/readyz").status_code == 200, 20, "gateway ready")


@pytest.fixture(scope="module")
def mod_topics(kafka: KafkaSettings) -> Topics:
    t = Topics(TopicSettings(prefix=f"t{uuid.uuid4().hex[:10]}", frame_partitions=4))
    ensure_topics(kafka, t.specs(["face"]))
    return t


@pytest.fixture(scope="module")
def client(kafka: KafkaSettings, mod_topics: Topics) -> Iterator[httpx.Client]:
    """A gateway that has seen: cam1 live with 5 results, cam2 ended (no data), and results of
    an unregistered stream; plus a processor group member with 3 of the 5 frames committed."""
    feeder = Feeder(kafka, mod_topics)
    feeder.register("cam1", "live")
    feeder.register("cam2", "ended")
    feeder.flush()
    with serve(create_app(settings(kafka, mod_topics)), bearer()) as c:
        ready(c)
        for seq in range(5):
            feeder.pair("cam1", seq)
        feeder.result("orphan", 0, int(time.time() * 1000))
        feeder.flush()

        def seen() -> bool:
            body = c.get("/api/streams").json()
            return [s["stats"] and s["stats"]["results_seen"] for s in body] == [5, None, 1]

        wait_until(seen, 15, "results at the gateway")
        yield c


@pytest.fixture(scope="module")
def worker(kafka: KafkaSettings, mod_topics: Topics, client: httpx.Client) -> Iterator[Consumer]:
    """A member of the face processors' group that has committed 3 of cam1's 5 frames."""
    c = Consumer(kafka.client_config() | {
        "group.id": mod_topics.group("face"), "auto.offset.reset": "earliest",
        "enable.auto.commit": False, "client.id": "test-worker",
    })
    c.subscribe([mod_topics.frames("face")])
    got: list[Message] = []
    deadline = time.monotonic() + 30
    while len(got) < 5 and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and m.error() is None:
            got.append(m)
    assert len(got) == 5
    third = got[2]
    topic, partition, offset = third.topic(), third.partition(), third.offset()
    assert topic is not None and partition is not None and offset is not None
    c.commit(offsets=[TopicPartition(topic, partition, offset + 1)],
             asynchronous=False)
    yield c
    c.close()


def test_streams_contract(client: httpx.Client) -> None:
    r = client.get("/api/streams")
    assert r.status_code == 200
    views = [StreamView.model_validate(v) for v in r.json()]
    assert [(v.stream, v.registered, v.status, v.kinds) for v in views] == [
        ("cam1", True, "live", ["face"]), ("cam2", True, "ended", ["face"]),
        ("orphan", False, "unknown", ["face"]),
    ]
    cam1 = views[0]
    assert cam1.source == "sample:" and cam1.producer == "test" and cam1.fps == 10.0
    assert cam1.stats is not None
    assert (cam1.stats.frames_seen, cam1.stats.results_seen, cam1.stats.last_seq) == (5, 5, 4)
    assert cam1.stats.drops.model_dump() == {"frames": 0, "results": 0, "clients": 0,
                                             "duplicates": 0}
    assert [(m.model, m.kind, m.results_seen) for m in cam1.stats.models] == [("m1", "face", 5)]
    assert 0 <= cam1.stats.latency_p50_ms <= cam1.stats.latency_p99_ms < 30_000
    assert cam1.stats.last_seen_ms > 0


def test_stream_filters_and_bad_query_parameters(client: httpx.Client) -> None:
    assert [v["stream"] for v in client.get("/api/streams?status=ended").json()] == ["cam2"]
    assert [v["stream"] for v in client.get("/api/streams?kind=face&status=live").json()] == [
        "cam1"]
    assert client.get("/api/streams?kind=person").json() == []
    for bad in ("status=sleeping", "kind=Face!"):
        r = client.get(f"/api/streams?{bad}")
        assert r.status_code == 422, bad
        assert r.json()["detail"][0]["loc"] == ["query", bad.split("=")[0]]
    r = client.get("/api/kinds?minutes=0")
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "minutes"]


def test_one_stream_and_errors(client: httpx.Client) -> None:
    r = client.get("/api/streams/cam1")
    assert r.status_code == 200 and StreamView.model_validate(r.json()).stream == "cam1"
    assert client.get("/api/streams/orphan").json()["registered"] is False
    r = client.get("/api/streams/nosuch")
    assert r.status_code == 404 and r.json() == {"detail": "stream 'nosuch' is not known"}
    for bad in ("bad%20id", "-dash-first", "x" * 129, "semi%3Bcolon"):
        r = client.get(f"/api/streams/{bad}")
        assert r.status_code == 400, bad
        assert "is not valid" in r.json()["detail"]


def test_kinds_show_lag_and_workers(client: httpx.Client, worker: Consumer,
                                    mod_topics: Topics) -> None:
    def kind() -> dict[str, Any]:
        body = client.get("/api/kinds").json()
        assert [k["kind"] for k in body] == ["face"]
        return dict(body[0])

    wait_until(lambda: kind()["workers"] == 1 and kind()["lag"] == 2, 30, "lag 2, one worker")
    k = KindView.model_validate(kind())
    assert (k.topic, k.results_topic, k.partitions, k.group) == (
        mod_topics.frames("face"), mod_topics.results("face"), 4, mod_topics.group("face"))
    [g] = k.groups
    assert (g.group, g.lag, sum(g.lag_by_partition.values())) == (mod_topics.group("face"), 2, 2)
    assert [m.client_id for m in g.members] == ["test-worker"]
    assert g.members[0].partitions == 4 and g.state == "stable"
    assert not k.stale and k.history and k.history[-1].workers == 1 and k.history[-1].lag == 2
    assert all(a.t_ms < b.t_ms for a, b in zip(k.history, k.history[1:], strict=False))
    assert client.get("/api/kinds?minutes=0.0001").json()[0]["history"] == []
    # The same per consumer group on the gateway's /metrics.
    labels = {"kind": "face", "group": mod_topics.group("face")}
    assert REGISTRY.get_sample_value("evi_gateway_group_lag", labels) == 2
    assert REGISTRY.get_sample_value("evi_gateway_group_workers", labels) == 1


def test_stats_health_metrics(client: httpx.Client, mod_topics: Topics) -> None:
    s = GatewayStats.model_validate(client.get("/api/stats").json())
    assert s.ready and s.kafka and s.kafka_error == "" and s.kinds == ["face"]
    assert s.topics == {mod_topics.frames("face"): 4, mod_topics.results("face"): 4,
                        mod_topics.streams: 1}
    assert s.streams == 3 and s.clients == 0 and s.records_read >= 13
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready"}
    # Prometheus reads its own port (tests/gateway/test_auth.py), never the public one.
    assert client.get("/metrics").status_code == 404


def test_docs_and_dashboard_are_served(client: httpx.Client) -> None:
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    assert {"/api/streams", "/api/streams/{stream_id}", "/api/kinds", "/api/stats", "/healthz",
            "/readyz", "/api/session"} <= set(spec["paths"])
    assert "/metrics" not in spec["paths"]
    assert {"StreamView", "KindView", "GatewayStats"} <= set(spec["components"]["schemas"])
    schemes = spec["components"]["securitySchemes"]
    assert schemes["HTTPBearer"]["scheme"] == "bearer"
    assert (schemes["APIKeyCookie"]["in"], schemes["APIKeyCookie"]["name"]) == (
        "cookie", "evi_session")
    page = client.get("/")
    assert page.status_code == 200 and 'src="src/app.js"' in page.text
    js = client.get("/src/app.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]


def closed_with(client: httpx.Client, path: str, **kw: Any) -> int | None:
    kw.setdefault("additional_headers", bearer())
    with connect(ws_url(client, path), **kw) as ws, pytest.raises(ConnectionClosed) as e:
        ws.recv(timeout=5)
    return e.value.rcvd.code if e.value.rcvd else None


def hello_of(client: httpx.Client, path: str, **kw: Any) -> dict[str, Any]:
    kw.setdefault("additional_headers", bearer())
    with connect(ws_url(client, path), **kw) as ws:
        raw = ws.recv(timeout=5)
        assert isinstance(raw, bytes)
        return unpack_message(raw)[0]


def test_websocket_bad_ids_close_4400(client: httpx.Client) -> None:
    for path in ("/ws/streams/bad%20id", "/ws/streams?ids=", "/ws/streams?ids=ok,no!pe",
                 "/ws/streams?ids=" + ",".join(f"s{i}" for i in range(300))):
        assert closed_with(client, path) == 4400, path
    hello = hello_of(client, "/ws/streams?ids=cam1,cam2")
    assert (hello["type"], hello["streams"], hello["known"], hello["kafka"]) == (
        "hello", ["cam1", "cam2"], ["cam1", "cam2"], True)
    assert [i["status"] for i in hello["info"]] == ["live", "ended"]


def test_cors_allows_only_configured_origins(kafka: KafkaSettings, mod_topics: Topics) -> None:
    app = create_app(settings(kafka, mod_topics, cors_origins=["http://dashboard.test"]))
    with serve(app) as c:
        pre = {"Access-Control-Request-Method": "GET",
               "Access-Control-Request-Headers": "Authorization"}
        ok = c.options("/api/streams", headers={"Origin": "http://dashboard.test", **pre})
        assert ok.status_code == 200
        assert ok.headers["access-control-allow-origin"] == "http://dashboard.test"
        no = c.options("/api/streams", headers={"Origin": "http://elsewhere.test", **pre})
        assert no.status_code == 400 and "access-control-allow-origin" not in no.headers
        got = c.get("/healthz", headers={"Origin": "http://dashboard.test"})
        assert got.headers["access-control-allow-origin"] == "http://dashboard.test"
