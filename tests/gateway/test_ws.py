"""Websockets on the real broker, against `evi gateway` run as a child process."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import pytest

from evi.kafka import ensure_topics
from evi.settings import KafkaSettings
from evi.topics import Topics
from gateway.protocol import unpack_message
from tests.gateway.feed import Feeder, big_jpeg, detection
from tests.gateway.gw import bearer, gateway
from tests.gateway.wsclient import ReconnectingClient, hello, recv_results
from tests.helpers import free_port, wait_until

pytestmark = pytest.mark.kafka

MB = 1 << 20


def test_every_subscriber_gets_every_result_of_its_streams(
    kafka: KafkaSettings, topics: Topics
) -> None:
    feeder = Feeder(kafka, topics)
    n = 60
    with gateway(kafka, topics, "ws-two-clients") as gw, contextlib.ExitStack() as stack:
        a, b, other, both = (
            stack.enter_context(gw.connect(path, max_size=MB))
            for path in ("/ws/streams/cam1", "/ws/streams/cam1", "/ws/streams/cam2",
                         "/ws/streams?ids=cam1,cam2")
        )
        for ws in (a, b, other, both):
            hello(ws)
        # The client offers permessage-deflate; the gateway declines (JPEG does not compress,
        # and zlib per client per message would dominate its CPU).
        assert a.protocol.extensions == []
        sent = {}
        for seq in range(n):
            sent[("cam1", seq)] = feeder.pair("cam1", seq)
            if seq % 10 == 0:
                sent[("cam2", seq)] = feeder.pair("cam2", seq)
            time.sleep(0.005)
        feeder.flush()
        for name, ws in (("a", a), ("b", b)):
            got = recv_results(ws, n, 30)
            assert [h["seq"] for h, _ in got] == list(range(n)), name
            for h, body in got:
                assert h["stream"] == "cam1" and h["image"] is True
                assert body == sent[("cam1", h["seq"])], "the producer's JPEG, byte for byte"
                assert h["detections"] == [detection(h["seq"]).to_json()]
        got = recv_results(other, 6, 30)
        assert [(h["stream"], h["seq"]) for h, _ in got] == [("cam2", s) for s in range(0, n, 10)]
        got = recv_results(both, n + 6, 30)
        assert [h["seq"] for h, _ in got if h["stream"] == "cam1"] == list(range(n))
        assert [h["seq"] for h, _ in got if h["stream"] == "cam2"] == list(range(0, n, 10))
        assert recv_results(a, 1, 0.5) == [], "nothing more, no duplicates"
        stats = gw.get("/api/stats")
        assert stats["clients"] == 4 and stats["dropped_to_clients"] == 0


def test_slow_client_drops_oldest_while_fast_client_gets_everything(
    kafka: KafkaSettings, topics: Topics
) -> None:
    feeder = Feeder(kafka, topics)
    n = 150  # ~16 MB at 25 fps: more than a stalled client's socket buffers and queue hold
    queue = 16
    env = {"EVI_CLIENT_QUEUE": str(queue), "EVI_FRAMES_ALONE_AFTER_MS": "0"}
    for seq in range(n):
        big_jpeg(seq)  # made before: the test's CPU goes to reading while records flow
    with gateway(kafka, topics, "ws-slow-fast", env=env) as gw, contextlib.ExitStack() as stack:
        fast = stack.enter_context(gw.connect("/ws/streams/cam1", max_size=4 * MB))
        # The slow client: tiny receive buffer, one message buffered, and it reads nothing
        # until the fast client has everything.
        sock = socket.create_connection(("127.0.0.1", gw.port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 10)
        slow = stack.enter_context(
            gw.connect("/ws/streams/cam1", sock=sock, max_size=4 * MB, max_queue=1,
                    ping_interval=None))
        fast_id = hello(fast)["client"]
        slow_id = hello(slow)["client"]
        def produce() -> None:
            for seq in range(n):
                feeder.pair("cam1", seq, big=True)
                time.sleep(0.04)
            feeder.flush()

        t0 = time.monotonic()
        producer = threading.Thread(target=produce)
        producer.start()
        got = recv_results(fast, n, 60)  # read while the records are produced
        producer.join()
        fast_s = time.monotonic() - t0
        [fast_view] = [c for c in gw.get("/api/stats")["client_list"] if c["id"] == fast_id]
        assert fast_view["dropped"] == 0, fast_view
        assert [h["seq"] for h, _ in got] == list(range(n)), "the fast client lost nothing"
        assert fast_s < n * 0.04 + 15, f"the fast client was held up: {fast_s:.1f}s"

        def slow_view() -> dict[str, int]:
            [view] = [c for c in gw.get("/api/stats")["client_list"] if c["id"] == slow_id]
            return dict(view)

        wait_until(lambda: slow_view()["queued"] == queue, 10, "the slow client's queue full")
        slow_seqs: list[int] = []
        deadline = time.monotonic() + 30
        while (not slow_seqs or slow_seqs[-1] != n - 1) and time.monotonic() < deadline:
            header, _ = unpack_message(slow.recv(timeout=10))  # type: ignore[arg-type]
            if header["type"] == "result":
                slow_seqs.append(header["seq"])
        view = slow_view()
        assert slow_seqs[-1] == n - 1, "the newest messages are kept"
        assert slow_seqs == sorted(set(slow_seqs)), "in order, no repeats"
        assert 0 < view["dropped"] == n - len(slow_seqs), (view, len(slow_seqs))
        assert view["sent"] == len(slow_seqs) and view["queued"] == 0
        [cam1] = gw.get("/api/streams")
        assert cam1["stats"]["drops"]["clients"] == view["dropped"]
        assert gw.get("/api/stats")["dropped_to_clients"] == view["dropped"]


def test_clients_that_leave_are_removed_at_once(kafka: KafkaSettings, topics: Topics) -> None:
    with gateway(kafka, topics, "ws-cleanup") as gw, contextlib.ExitStack() as stack:
        clients = [stack.enter_context(gw.connect("/ws/streams?ids=*")) for _ in range(3)]
        for ws in clients:
            hello(ws)
        assert gw.get("/api/stats")["clients"] == 3
        clients[0].close()  # a clean close
        clients[1].socket.shutdown(socket.SHUT_RDWR)  # the network goes: no close frame
        clients[1].socket.close()
        wait_until(lambda: gw.get("/api/stats")["clients"] == 1, 2, "two clients gone", step=0.05)
        clients[2].close()
        wait_until(lambda: gw.get("/api/stats")["clients"] == 0, 2, "all gone", step=0.05)


def test_gateway_restart_loses_no_subscriber(kafka: KafkaSettings, topics: Topics) -> None:
    feeder = Feeder(kafka, topics)
    port = free_port()
    clients = []
    try:
        with gateway(kafka, topics, "ws-restart-1", port=port) as gw:
            clients = [ReconnectingClient(gw.ws(f"/ws/streams/{s}"), bearer())
                       for s in ("cam1", "cam1", "cam2")]
            wait_until(lambda: all(c.connects == 1 for c in clients), 10, "clients connected")
            for seq in range(5):
                feeder.pair("cam1", seq)
                feeder.pair("cam2", seq)
            feeder.flush()
            wait_until(lambda: all(len(c.results) == 5 for c in clients), 15, "first results")
        # The gateway is gone: the clients back off and retry, as the dashboard does.
        wait_until(lambda: all(c.closes for c in clients), 10, "clients saw the close")
        time.sleep(1.5)
        with gateway(kafka, topics, "ws-restart-2", port=port):
            wait_until(lambda: all(c.connects == 2 for c in clients), 20, "clients reconnected")
            for seq in range(5, 10):
                feeder.pair("cam1", seq)
                feeder.pair("cam2", seq)
            feeder.flush()
            wait_until(lambda: all(len(c.results) == 10 for c in clients), 15, "later results")
        for c, stream in zip(clients, ("cam1", "cam1", "cam2"), strict=True):
            assert c.seqs(stream) == list(range(10))
            assert c.closes[0] in (1001, 1012), c.closes  # going away / service restart
    finally:
        for c in clients:
            c.close()


def test_new_kind_after_start_is_picked_up(kafka: KafkaSettings, topics: Topics) -> None:
    feeder = Feeder(kafka, topics)
    env = {"EVI_METADATA_REFRESH_S": "1"}
    with gateway(kafka, topics, "ws-new-kind", env=env) as gw, gw.connect(
            "/ws/streams?ids=*", max_size=MB) as ws:
        assert gw.get("/api/stats")["kinds"] == ["face"]
        hello(ws)
        ensure_topics(kafka, topics.specs(["person"]))
        for seq in range(3):  # at once: before the gateway's next look at the topics
            feeder.pair("cam1", seq, kind="person", model="ssd")
        feeder.flush()
        got = recv_results(ws, 3, 20)
        assert [(h["kind"], h["model"], h["seq"]) for h, _ in got] == [
            ("person", "ssd", s) for s in range(3)]
        assert all(body for _, body in got), "with their frames"
        wait_until(lambda: [k["kind"] for k in gw.get("/api/kinds")] == ["face", "person"], 10,
                   "person in /api/kinds")
