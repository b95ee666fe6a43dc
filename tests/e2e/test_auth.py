"""The dashboard against a gateway with a token, in a real Chromium: nothing shown without it;
the link `evi dev` prints (`#token=…`) or the banner's form trade the token for an HttpOnly,
SameSite=Strict session cookie; from then on REST, the websocket and /docs use the cookie, and
the token is nowhere the page can read or a proxy could log (address, storage, websocket URL)."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page

from evi.dev import dashboard_link
from evi.settings import KafkaSettings
from evi.topics import Topics
from tests.e2e.browser import chromium_page
from tests.gateway.feed import Feeder
from tests.gateway.gw import TOKEN, gateway

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]

CONNECTED = "() => document.body.dataset.ws === 'open' && document.body.dataset.banner === ''"
LIVE = '.tile[data-stream="cam1"][data-status="live"]'


def sockets_of(page: Page) -> list[str]:
    urls: list[str] = []
    page.on("websocket", lambda ws: urls.append(ws.url))
    return urls


def assert_token_kept_nowhere(page: Page, sockets: list[str]) -> None:
    assert TOKEN not in page.url and "token" not in page.url
    assert sockets and all("token" not in u and TOKEN not in u for u in sockets), sockets
    stored = page.evaluate("() => JSON.stringify([{...sessionStorage}, {...localStorage}])")
    assert TOKEN not in stored
    assert "evi_session" not in page.evaluate("() => document.cookie"), "HttpOnly"
    (cookie,) = [c for c in page.context.cookies() if c["name"] == "evi_session"]
    assert (cookie["httpOnly"], cookie["sameSite"], cookie["path"], cookie["secure"]) == (
        True, "Strict", "/", False)
    assert TOKEN not in cookie["value"]


def test_dashboard_asks_for_the_token_then_runs_on_the_cookie(
    kafka: KafkaSettings, topics: Topics
) -> None:
    feeder = Feeder(kafka, topics)
    feeder.register("cam1")
    feeder.flush()
    with gateway(kafka, topics, "auth-gateway") as gw, chromium_page() as page:
        sockets = sockets_of(page)
        page.goto(gw.url("/"))
        page.wait_for_function("() => document.body.dataset.banner === 'auth'", timeout=15_000)
        assert page.locator(".tile").count() == 0, "nothing shown without the token"
        assert sockets == [], "no websocket is tried without a session"
        page.fill("#token-form input", "wrong-token-0123456789")
        page.click("#token-form button")
        page.wait_for_timeout(1000)
        assert page.evaluate("() => document.body.dataset.banner") == "auth"
        assert page.locator(".tile").count() == 0
        page.fill("#token-form input", TOKEN)
        page.click("#token-form button")
        page.wait_for_function(CONNECTED, timeout=15_000)
        page.wait_for_selector(LIVE, timeout=30_000)
        assert_token_kept_nowhere(page, sockets)
        # The API docs open with the same cookie; without it they are refused.
        assert page.request.get(gw.url("/docs")).status == 200
        assert page.request.get(gw.url("/openapi.json")).status == 200

        browser = page.context.browser
        assert browser is not None
        other = browser.new_context()  # another browser profile: no cookie
        try:
            assert other.request.get(gw.url("/openapi.json")).status == 401
            assert other.request.get(gw.url("/api/streams")).status == 401
        finally:
            other.close()


def test_the_printed_link_signs_in_once_and_leaves_the_address(
    kafka: KafkaSettings, topics: Topics
) -> None:
    feeder = Feeder(kafka, topics)
    feeder.register("cam1")
    feeder.flush()
    with gateway(kafka, topics, "auth-link-gateway") as gw, chromium_page() as page:
        sockets = sockets_of(page)
        page.goto(dashboard_link(gw.port, TOKEN))
        page.wait_for_function(CONNECTED, timeout=15_000)
        page.wait_for_selector(LIVE, timeout=30_000)
        assert page.url == gw.url("/"), "the token is taken out of the address bar"
        assert_token_kept_nowhere(page, sockets)
        page.reload()  # the cookie alone from now on
        page.wait_for_function(CONNECTED, timeout=15_000)
        page.wait_for_selector(LIVE, timeout=30_000)
        # Signing out (DELETE /api/session) brings the token form back.
        assert page.evaluate("async () => (await fetch('/api/session', {method: 'DELETE'}))"
                             ".status") == 204
        page.reload()
        page.wait_for_function("() => document.body.dataset.banner === 'auth'", timeout=15_000)
