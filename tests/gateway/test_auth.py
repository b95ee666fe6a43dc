"""Auth on the real app (served in-process over the Kafka-free fan-out, tests/gateway/offline.py):
REST and docs need the token or the session cookie; websockets are refused at the handshake
(401 / 403, counted as 4401 / 4403) before anything is subscribed; connection caps close 1013."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from pydantic import SecretStr
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from evi.settings import TopicSettings
from gateway.auth import COOKIE, Auth
from gateway.protocol import unpack_message
from gateway.settings import GatewaySettings
from tests.gateway import records as rec
from tests.gateway.gw import TOKEN, bearer
from tests.gateway.offline import OfflineFanout, offline_gateway
from tests.gateway.server import ws_url

DATA = ["/api/streams", "/api/streams/cam1", "/api/kinds", "/api/stats"]
DOCS = ["/docs", "/redoc", "/openapi.json"]
OPEN = ["/healthz", "/readyz", "/", "/index.html", "/src/app.js", "/style.css"]


def settings(**kw: Any) -> GatewaySettings:
    kw.setdefault("auth_token", SecretStr(TOKEN))
    return GatewaySettings(topics=TopicSettings(prefix=rec.PREFIX), **kw)


@contextlib.contextmanager
def served(**kw: Any) -> Iterator[tuple[httpx.Client, OfflineFanout]]:
    """A client sending nothing by itself (no token, no cookie)."""
    with pytest.MonkeyPatch.context() as mp, offline_gateway(mp, settings(**kw)) as got:
        got[1].inject([rec.registry("cam1")])
        yield got


def closed(code: str) -> float:
    return REGISTRY.get_sample_value("evi_gateway_ws_closed_total", {"code": code}) or 0.0


def ws(client: httpx.Client, path: str = "/ws/streams/cam1", **kw: Any) -> ClientConnection:
    return connect(ws_url(client, path), open_timeout=5, **kw)


def hello(c: ClientConnection) -> str:
    raw = c.recv(timeout=5)
    assert isinstance(raw, bytes)
    return str(unpack_message(raw)[0]["type"])


def refused(client: httpx.Client, path: str = "/ws/streams/cam1", **kw: Any) -> int:
    """The HTTP status the handshake was refused with."""
    with pytest.raises(InvalidStatus) as e, ws(client, path, **kw):
        pass
    return e.value.response.status_code


def close_code(c: ClientConnection) -> tuple[int | None, str]:
    with pytest.raises(ConnectionClosed) as e:
        c.recv(timeout=5)
    return (e.value.rcvd.code, e.value.rcvd.reason) if e.value.rcvd else (None, "")


def test_rest_and_docs_need_the_token_probes_and_the_page_shell_do_not() -> None:
    with served() as (c, _):
        for path in DATA + DOCS:
            r = c.get(path)
            assert (r.status_code, r.headers.get("www-authenticate")) == (401, "Bearer"), path
            assert c.get(path, headers=bearer("wrong-token-0123456789")).status_code == 401
            assert c.get(path, headers={"Authorization": TOKEN}).status_code == 401  # no scheme
            assert c.get(path, headers=bearer()).status_code == 200, path
        assert c.get("/openapi.json").json() == {"detail": (
            "missing or wrong token (a bearer token, or the session cookie)")}
        for path in OPEN:
            assert c.get(path).status_code == 200, path
        assert c.get("/metrics").status_code == 404, "Prometheus reads metrics_port"
        # A token in the query string is not a credential anywhere.
        assert c.get(f"/api/streams?token={TOKEN}").status_code == 401


def test_session_cookie_works_for_rest_docs_and_websockets() -> None:
    with served() as (c, fanout):
        assert c.post("/api/session").status_code == 401
        assert c.post("/api/session", headers=bearer("wrong-token-0123456789")).status_code == 401
        r = c.post("/api/session", headers=bearer())
        assert r.status_code == 200 and r.json()["auth"] is True
        assert r.json()["expires_ms"] > time.time() * 1000 + 6 * 86_400_000
        assert r.headers["cache-control"] == "no-store"
        cookie = r.headers["set-cookie"]
        parts = [p.strip().lower() for p in cookie.split(";")]
        assert {"httponly", "samesite=strict", "path=/", "max-age=604800"} <= set(parts)
        assert "secure" not in parts, "plain http: a Secure cookie would never come back"
        value = r.cookies[COOKIE]
        assert TOKEN not in value and value.startswith("v1.")
        jar = {"Cookie": f"{COOKIE}={value}"}
        for path in DATA + DOCS:
            assert c.get(path, headers=jar).status_code == 200, path
        with ws(c, additional_headers=jar) as w:
            assert hello(w) == "hello"
        # Renewed with the cookie alone; forgotten on DELETE.
        again = c.post("/api/session", headers=jar)
        assert again.status_code == 200 and COOKIE in again.cookies
        gone = c.delete("/api/session", headers=jar)
        assert gone.status_code == 204 and "max-age=0" in gone.headers["set-cookie"].lower()
        # Tampered, expired, foreign: refused.
        expired, _ = Auth(settings()).new_session(now=time.time() - 8 * 86_400)
        other, _ = Auth(settings(auth_token=SecretStr("another-token-0123456789"))).new_session()
        for bad in (value[:-2] + "xx", expired, other, "v1.99999999999.", TOKEN, "x" * 5000):
            assert c.get("/api/stats", headers={"Cookie": f"{COOKIE}={bad}"}).status_code == 401
            assert refused(c, additional_headers={"Cookie": f"{COOKIE}={bad}"}) == 401
        assert len(fanout.subscribers) == 0


def test_session_cookie_is_secure_behind_https() -> None:
    with served() as (c, _):
        r = c.post("/api/session", headers={**bearer(), "X-Forwarded-Proto": "https"})
        assert "secure" in [p.strip().lower() for p in r.headers["set-cookie"].split(";")]


def test_websocket_without_good_credentials_is_refused_at_the_handshake() -> None:
    with served() as (c, fanout):
        before = closed("4401")
        assert refused(c) == 401
        assert refused(c, additional_headers=bearer("wrong-token-0123456789")) == 401
        assert refused(c, f"/ws/streams/cam1?token={TOKEN}") == 401, "no token in URLs"
        assert refused(c, f"/ws/streams?ids=*&token={TOKEN}") == 401
        assert closed("4401") - before == 4
        assert len(fanout.subscribers) == 0, "nothing was subscribed"
        with ws(c, additional_headers=bearer()) as w:
            assert hello(w) == "hello"


def test_websocket_from_another_origin_is_refused() -> None:
    with served(allowed_origins=["https://ops.example.org"]) as (c, fanout):
        port = c.base_url.port
        jar = {"Cookie": f"{COOKIE}={c.post('/api/session', headers=bearer()).cookies[COOKIE]}"}
        before = closed("4403")
        for origin in ("http://evil.test", f"http://evil.test:{port}", "null",
                       f"http://127.0.0.1:{port}.evil.test", "http://127.0.0.1", "file://"):
            assert refused(c, additional_headers={**jar, "Origin": origin}) == 403, origin
            assert refused(c, additional_headers={**bearer(), "Origin": origin}) == 403, origin
        assert closed("4403") - before == 12
        assert len(fanout.subscribers) == 0
        # Its own origin (as the browser writes it), an allowed one, and no Origin (no browser).
        for origin in (f"http://127.0.0.1:{port}", f"HTTP://127.0.0.1:{port}/",
                       "https://ops.example.org"):
            with ws(c, additional_headers={**jar, "Origin": origin}) as w:
                assert hello(w) == "hello", origin
        with ws(c, additional_headers=bearer()) as w:
            assert hello(w) == "hello"
        # Behind a TLS proxy, an http page of the same name is another origin.
        https = {**jar, "X-Forwarded-Proto": "https"}
        assert refused(c, additional_headers={**https, "Origin": f"http://127.0.0.1:{port}"}) == 403
        with ws(c, additional_headers={**https, "Origin": f"https://127.0.0.1:{port}"}) as w:
            assert hello(w) == "hello"
        # The session exchange checks the Origin too.
        evil = {**bearer(), "Origin": "http://evil.test"}
        assert c.post("/api/session", headers=evil).status_code == 403


def connect_from(c: httpx.Client, source: str) -> ClientConnection:
    host, port = c.base_url.host, c.base_url.port
    assert port is not None
    sock = socket.create_connection((host, port), timeout=5, source_address=(source, 0))
    return connect(ws_url(c, "/ws/streams?ids=*"), sock=sock, additional_headers=bearer())


def test_connections_over_the_caps_close_1013() -> None:
    with served(max_connections=3, max_connections_per_client=2) as (c, fanout), \
            contextlib.ExitStack() as stack:
        before = closed("1013")
        a = [stack.enter_context(connect_from(c, "127.0.0.1")) for _ in range(2)]
        assert [hello(w) for w in a] == ["hello", "hello"]
        with connect_from(c, "127.0.0.1") as third:
            assert close_code(third) == (1013, "too many connections from this address (2)")
        b = stack.enter_context(connect_from(c, "127.0.0.2"))
        assert hello(b) == "hello"
        with connect_from(c, "127.0.0.3") as fourth:
            assert close_code(fourth) == (1013, "too many connections (3): try again later")
        assert closed("1013") - before == 2
        assert len(fanout.subscribers) == 3
        a[0].close()
        deadline = time.monotonic() + 5
        while len(fanout.subscribers) > 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        with connect_from(c, "127.0.0.1") as again:  # a place was given back
            assert hello(again) == "hello"


def test_open_gateway_on_loopback_needs_no_token_but_a_loopback_host() -> None:
    with served(auth_token=None, auth_required=False) as (c, _):
        assert c.get("/api/streams").status_code == 200
        assert c.get("/docs").status_code == 200
        r = c.post("/api/session")
        assert r.json() == {"auth": False, "expires_ms": None} and "set-cookie" not in r.headers
        with ws(c) as w:
            assert hello(w) == "hello"
        # DNS rebinding: a page whose own name resolves to 127.0.0.1.
        assert c.get("/api/streams", headers={"Host": "evil.test"}).status_code == 400
        assert c.get("/api/streams", headers={"Host": "localhost:1"}).status_code == 200
        # and a browser page of another origin still cannot open a websocket.
        assert refused(c, additional_headers={"Origin": "http://evil.test"}) == 403
