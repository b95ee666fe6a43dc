"""/docs and /redoc in a real Chromium that may reach nothing but 127.0.0.1: every other
request is aborted and recorded, and the pages still render the API's operations."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Page, Route
from pydantic import SecretStr

from evi.settings import TopicSettings
from gateway.settings import GatewaySettings
from tests.e2e.browser import chromium_page
from tests.gateway import records as rec
from tests.gateway.gw import TOKEN, bearer
from tests.gateway.offline import offline_gateway

pytestmark = [pytest.mark.e2e]

OPERATIONS = {"/api/streams", "/api/streams/{stream_id}", "/api/kinds", "/api/stats",
              "/api/session", "/healthz", "/readyz"}


class Offline:
    """Aborts every request to a host other than 127.0.0.1; keeps every URL asked for."""

    def __init__(self, page: Page) -> None:
        self.asked: list[str] = []
        self.blocked: list[str] = []
        page.context.route("**/*", self._route)

    def _route(self, route: Route) -> None:
        url = route.request.url
        self.asked.append(url)
        if urlsplit(url).hostname != "127.0.0.1":
            self.blocked.append(url)
            route.abort("internetdisconnected")
        else:
            route.continue_()


def signed_in(page: Page, base: str) -> None:
    """The dashboard's way in: the token once for the session cookie."""
    r = page.request.post(base + "/api/session", headers=bearer())
    assert r.status == 200 and r.json()["auth"] is True


def test_swagger_ui_and_redoc_render_the_operations_with_no_network() -> None:
    s = GatewaySettings(topics=TopicSettings(prefix=rec.PREFIX), auth_token=SecretStr(TOKEN))
    with pytest.MonkeyPatch.context() as mp, offline_gateway(mp, s) as (c, _), \
            chromium_page() as page:
        base = str(c.base_url).rstrip("/")
        net = Offline(page)
        signed_in(page, base)

        csp: list[str] = []
        page.on("console", lambda m: csp.append(m.text) if "Content Security" in m.text
                else None)
        page.goto(base + "/docs")
        page.wait_for_selector(".opblock-summary-path", timeout=20_000)
        paths = page.eval_on_selector_all(".opblock-summary-path",
                                          "els => els.map(e => e.dataset.path)")
        assert set(paths) >= OPERATIONS, paths
        assert "/metrics" not in paths
        assert page.locator(".swagger-ui .info .title").inner_text().startswith("evi gateway")

        page.goto(base + "/redoc")
        page.wait_for_selector("[data-section-id^='operation/']", timeout=20_000)
        shown = page.locator("redoc, #redoc-container, body").first.inner_text()
        assert "/api/streams/{stream_id}" in shown and "/api/kinds" in shown

        assert net.blocked == [], f"requests past the gateway: {net.blocked}"
        # The one load the policy refuses: ReDoc's vendor logo, never sent (so not above).
        assert all("cdn.redoc.ly" in m for m in csp), csp
        hosts = {urlsplit(u).hostname for u in net.asked}
        assert hosts == {"127.0.0.1"}
        # The page really used the packaged assets (and the spec) from the gateway.
        fetched = {urlsplit(u).path for u in net.asked}
        assert {"/docs", "/redoc", "/openapi.json", "/docs/assets/swagger-ui-bundle.js",
                "/docs/assets/swagger-ui.css", "/docs/assets/redoc.standalone.js"} <= fetched
