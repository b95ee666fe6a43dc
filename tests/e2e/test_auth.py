"""A gateway with a token: the dashboard asks for it, then connects; `#token=` works too."""

from __future__ import annotations

import pytest

from evi.settings import KafkaSettings
from evi.topics import Topics
from tests.e2e.browser import chromium_page
from tests.gateway.feed import Feeder
from tests.gateway.gw import gateway

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]

CONNECTED = "() => document.body.dataset.ws === 'open' && document.body.dataset.banner === ''"


def test_dashboard_asks_for_the_token(kafka: KafkaSettings, topics: Topics) -> None:
    feeder = Feeder(kafka, topics)
    feeder.register("cam1")
    feeder.flush()
    env = {"EVI_AUTH_TOKEN": "s3cret"}
    with gateway(kafka, topics, "auth-gateway", env=env) as gw, chromium_page() as page:
        page.goto(gw.url("/"))
        page.wait_for_function("() => document.body.dataset.banner === 'auth'", timeout=15_000)
        assert page.locator(".tile").count() == 0, "nothing shown without the token"
        page.fill("#token-form input", "wrong")
        page.click("#token-form button")
        page.wait_for_function("() => document.body.dataset.banner === 'auth'", timeout=15_000)
        page.fill("#token-form input", "s3cret")
        page.click("#token-form button")
        page.wait_for_function(CONNECTED, timeout=15_000)
        page.wait_for_selector('.tile[data-stream="cam1"][data-status="live"]', timeout=30_000)

        browser = page.context.browser
        assert browser is not None
        fresh = browser.new_page()  # a new tab (no stored token): it travels in the address
        fresh.goto(gw.url("/#token=s3cret"))
        fresh.wait_for_function(CONNECTED, timeout=15_000)
        assert "token" not in fresh.url, "the token is taken out of the address bar"
