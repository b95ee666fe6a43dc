"""Hostile websocket viewers against the real app served in-process (no broker, tests/gateway/
offline.py): hypothesis-made ids (any Unicode, very long, thousands, empty, `*` among ids),
floods of large and of many client messages, text and binary, and clients that vanish while
messages are being sent to them. The gateway closes each with its documented code, logs no
server error, leaks no subscriber, and a good client is served afterwards."""

from __future__ import annotations

import contextlib
import logging
import socket
import time
import urllib.parse
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr
from websockets.exceptions import ConnectionClosed, InvalidMessage, InvalidStatus
from websockets.sync.client import connect

from evi.settings import TopicSettings
from gateway.protocol import unpack_message
from gateway.settings import GatewaySettings
from tests.gateway import records as rec
from tests.gateway.feed import big_jpeg, jpeg
from tests.gateway.gw import TOKEN, bearer
from tests.gateway.offline import OfflineFanout, offline_gateway
from tests.gateway.server import ws_url
from tests.helpers import wait_until

AUTH = bearer(TOKEN)
RAN: dict[str, int] = {}
OUTCOMES: dict[str, int] = {}
VALID = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,20}\Z")
HOSTILE = st.one_of(
    st.text(max_size=200),  # any Unicode, control characters, surrogates
    st.text(alphabet="abc,*", max_size=50),  # `*` among ids, empty ids, only commas
    st.lists(VALID, min_size=200, max_size=400).map(",".join),  # around the 256 cap
    st.integers(1, 20_000).map(lambda n: "x" * n),  # very long
    st.lists(st.one_of(VALID, st.text(max_size=8)), max_size=20).map(",".join),
)


@pytest.fixture(scope="module")
def gw() -> Iterator[tuple[httpx.Client, OfflineFanout]]:
    s = GatewaySettings(topics=TopicSettings(prefix=rec.PREFIX), auth_token=SecretStr(TOKEN),
                        client_queue=8,
                        frames_alone_after_ms=0, ws_client_max_bytes=4096, ws_client_rate=10)
    with pytest.MonkeyPatch.context() as mp, offline_gateway(mp, s) as served:
        yield served
    print(f"\nwebsocket fuzz cases run: {RAN}; outcomes {OUTCOMES}")


def outcome(url: str) -> str:
    """hello, a close code, or the handshake's HTTP status: whatever the gateway answered."""
    try:
        with connect(url, additional_headers=AUTH, open_timeout=5, close_timeout=2) as ws:
            raw = ws.recv(timeout=5)
            assert isinstance(raw, bytes), "the gateway only sends binary messages"
            return str(unpack_message(raw)[0]["type"])
    except ConnectionClosed as e:
        return f"close {e.rcvd.code if e.rcvd else None}"
    except InvalidStatus as e:
        return f"http {e.response.status_code}"
    except InvalidMessage:  # a request line too long for the server: refused before HTTP
        return "refused"


def count(kind: str, what: str) -> None:
    RAN[kind] = RAN.get(kind, 0) + 1
    OUTCOMES[what] = OUTCOMES.get(what, 0) + 1


@settings(max_examples=150, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(ids=HOSTILE)
def test_hostile_ids_get_hello_or_4400_never_a_server_error(
    gw: tuple[httpx.Client, OfflineFanout], ids: str
) -> None:
    client, fanout = gw
    many = outcome(ws_url(client, "/ws/streams?ids=" + urllib.parse.quote(ids, safe="")))
    one = outcome(ws_url(client, "/ws/streams/" + urllib.parse.quote(ids, safe="")))
    count("hostile ids", many)
    count("hostile ids", one)
    assert many in ("hello", "close 4400", "refused", "http 400", "http 414"), (ids[:80], many)
    assert one in ("hello", "close 4400", "refused", "http 400", "http 403", "http 404",
                   "http 414"), (ids[:80], one)
    wait_until(lambda: len(fanout.subscribers) == 0, 5, "no subscriber left", step=0.01)


def closed_by(client: httpx.Client, send: list[str | bytes], pause: float = 0) -> int | str:
    """The close code the gateway answered `send` with, or "open" (still open 1 s after)."""
    with connect(ws_url(client, "/ws/streams?ids=*"), additional_headers=AUTH,
                 max_size=1 << 24) as ws:
        ws.recv(timeout=5)  # hello
        try:
            for message in send:
                ws.send(message)
                if pause:
                    time.sleep(pause)
            while True:
                ws.recv(timeout=1)
        except ConnectionClosed as e:
            return e.rcvd.code if e.rcvd else "no close frame"
        except TimeoutError:
            return "open"


def test_client_floods_close_with_1009_or_1008_and_slow_talk_is_fine(
    gw: tuple[httpx.Client, OfflineFanout], caplog: pytest.LogCaptureFixture
) -> None:
    client, fanout = gw
    caplog.set_level(logging.ERROR)
    cases: dict[str, tuple[list[str | bytes], float, int | str]] = {
        "one 1 MiB binary": ([bytes(1 << 20)], 0.0, 1009),
        "one 5 kB text": (["é" * 2500], 0.0, 1009),
        "1000 small binary at once": ([b"x"] * 1000, 0.0, 1008),
        "500 small text at once": (["hi"] * 500, 0.0, 1008),
        "mixed text and binary at 5/s": (["ping", b"\x00\x01", "pong"], 0.2, "open"),
    }
    for name, (send, pause, want) in cases.items():
        got = closed_by(client, send, pause)
        count("floods", f"{name}: {got}")
        assert got == want, name
    # The server's errors only: the test's own vanishing clients (websockets.client) may log theirs.
    assert not [r for r in caplog.records
                if r.levelno >= logging.ERROR and not r.name.startswith("websockets.client")]
    wait_until(lambda: len(fanout.subscribers) == 0, 5, "no subscriber left", step=0.01)


def test_clients_vanishing_mid_send_do_not_hurt_a_good_client(
    gw: tuple[httpx.Client, OfflineFanout], caplog: pytest.LogCaptureFixture
) -> None:
    client, fanout = gw
    caplog.set_level(logging.ERROR)
    host, port = client.base_url.host, client.base_url.port
    assert port is not None
    for round_ in range(20):
        with contextlib.ExitStack() as stack:
            socks = []
            for _ in range(5):  # subscribed to everything, then gone without a close frame
                sock = socket.create_connection((host, port))
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                ws = stack.enter_context(connect(ws_url(client, "/ws/streams?ids=*"),
                                                 additional_headers=AUTH, sock=sock,
                                                 max_size=1 << 24))
                ws.recv(timeout=5)
                socks.append(sock)
            base = round_ * 10
            fanout.inject([m for s in range(base, base + 10)
                           for m in (rec.frame("big", s, s + 1, big_jpeg(s % 4)),
                                     rec.result("big", s, s + 1))])
            for sock in socks:
                sock.shutdown(socket.SHUT_RDWR)
                sock.close()
        count("vanishing clients", "5 gone mid-send")
    wait_until(lambda: len(fanout.subscribers) == 0, 10, "vanished clients removed", step=0.05)
    with connect(ws_url(client, "/ws/streams/good"), additional_headers=AUTH,
                 max_size=1 << 20) as good:
        assert unpack_message(good.recv(timeout=5))[0]["type"] == "hello"  # type: ignore[arg-type]
        fanout.inject([m for s in range(5)
                       for m in (rec.frame("good", s, 1000 + s, jpeg(s)),
                                 rec.result("good", s, 1000 + s))])
        got = [unpack_message(good.recv(timeout=5)) for _ in range(5)]  # type: ignore[arg-type]
    assert [(h["type"], h["seq"], body) for h, body in got] == [
        ("result", s, jpeg(s)) for s in range(5)]
    # The server's errors only: the test's own vanishing clients (websockets.client) may log theirs.
    assert not [r for r in caplog.records
                if r.levelno >= logging.ERROR and not r.name.startswith("websockets.client")]
    assert client.get("/readyz").json() == {"status": "ready"}
