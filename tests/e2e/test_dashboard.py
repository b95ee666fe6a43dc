"""The dashboard in a real headless Chromium, over the whole pipeline on the real broker:
`evi produce` (sample clip, looping) → two `evi process` (two face models) → `evi gateway`
with a token, opened as `evi dev` prints it (`/#token=…`: the page trades it for a cookie).

It checks that tiles render with boxes (pixels on the canvas, not only the DOM), that a stream
with two models shows both, the scaling panel, the large view, and that the dashboard comes
back by itself after a gateway restart. Screenshots go to test-artifacts/."""

from __future__ import annotations

import contextlib

import pytest
from playwright.sync_api import Page

from evi.dev import dashboard_link
from evi.settings import KafkaSettings
from evi.topics import Topics
from tests.e2e.browser import chromium_page
from tests.gateway.gw import TOKEN
from tests.helpers import REPO, common, evi_process, free_port, http_ok, log_tail, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]

ARTIFACTS = REPO / "test-artifacts"
TILE = '.tile[data-stream="sample-1"]'

COUNT_PIXELS = """([sel, rule]) => {
  const c = document.querySelector(sel + ' canvas');
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  const test = {
    green: (r, g, b) => r < 60 && g > 190 && b < 130,     // first model, #00e05a
    magenta: (r, g, b) => r > 200 && g < 120 && b > 170,  // second model, #ff4fd8
  }[rule];
  let n = 0;
  for (let i = 0; i < d.length; i += 4) if (test(d[i], d[i + 1], d[i + 2])) n++;
  return n;
}"""


def tile_number(page: Page, attr: str) -> int:
    return int(page.evaluate(f"() => document.querySelector('{TILE}')?.dataset.{attr} || 0"))


def wait_js(page: Page, expr: str, what: str, timeout_s: float = 60) -> None:
    try:
        page.wait_for_function(expr, timeout=timeout_s * 1000, polling=250)
    except Exception as e:  # Playwright's TimeoutError: say what we waited for, with logs
        logs = "\n".join(log_tail(n, 15) for n in ("e2e-gateway", "e2e-proc-short",
                                                     "e2e-proc-full", "e2e-producer"))
        raise AssertionError(f"timed out waiting for {what}\n{logs}") from e


def test_dashboard_end_to_end(kafka: KafkaSettings, topics: Topics) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    flags = common(kafka, topics.prefix)
    env = {"EVI_PROBE_INTERVAL_S": "0.5", "EVI_KINDS_INTERVAL_S": "1", "EVI_AUTH_TOKEN": TOKEN}

    def gateway() -> contextlib.AbstractContextManager[object]:
        return evi_process("e2e-gateway", "gateway", "--port", str(port), "--metrics-port",
                           str(free_port()), *flags, env=env)

    with contextlib.ExitStack() as stack:
        stack.enter_context(evi_process("e2e-proc-short", "process", "--kind", "face",
                                        "--web-port", "0", *flags))
        stack.enter_context(evi_process("e2e-proc-full", "process", "--kind", "face", "--model",
                                        "blazeface-full", "--web-port", "0", *flags))
        stack.enter_context(evi_process(
            "e2e-producer", "produce", "--source", "sample:", "--stream", "sample-1",
            "--source", "sample:", "--stream", "sample-2", "--kind", "face", "--fps", "5",
            "--loop", *flags))
        page = stack.enter_context(chromium_page())

        with gateway():
            wait_until(lambda: http_ok(f"{url}/readyz"), 60, "gateway ready")
            page.goto(dashboard_link(port, TOKEN))
            check_live_dashboard(page)
            assert page.url == f"{url}/", "the token left the address bar"
            results_before = tile_number(page, "results")

        # The gateway is gone: the banner says so; then it comes back and so does the video (the
        # session cookie is good for every gateway with the same token).
        wait_js(page, "() => document.body.dataset.banner === 'gateway'", "gateway-down banner",
                20)
        assert "Gateway unreachable" in page.locator("#banner").inner_text()
        page.screenshot(path=str(ARTIFACTS / "dashboard-gateway-down.png"))
        with gateway():
            wait_js(page, "() => document.body.dataset.ws === 'open' && "
                          "document.body.dataset.banner === ''", "reconnected, banner gone", 60)
            wait_js(page, f"() => +document.querySelector('{TILE}').dataset.results > "
                          f"{results_before + 5}", "results flowing again")


def check_live_dashboard(page: Page) -> None:
    # Live tiles with boxes: the DOM says so, and so do the canvas pixels.
    wait_js(page, f"""() => {{ const t = document.querySelector('{TILE}');
        return t && +t.dataset.boxes > 0 && +t.dataset.results > 10; }}""",
            "sample-1 tile with boxes drawn", 120)
    assert page.locator(".tile").count() == 2
    pixels = f"(rule) => ({COUNT_PIXELS})(['{TILE}', rule]) > 300"
    wait_js(page, f"() => ({pixels})('green')", "green box pixels on the canvas")
    # Two models on one stream: a selector and a second (magenta) overlay.
    wait_js(page, f"() => document.querySelector('{TILE}').dataset.models === '2'",
            "results of both models")
    wait_js(page, f"() => +document.querySelector('{TILE}').dataset.boxes >= 2",
            "boxes of both models on one frame")
    wait_js(page, f"() => ({pixels})('green') && ({pixels})('magenta')",
            "green and magenta box pixels on one frame")
    chips = page.locator(f"{TILE} .chip").all_inner_texts()
    assert sorted(chips) == ["all", "blazeface-full", "blazeface-short"], chips
    # Numbers from the REST API on the tile, and the scaling panel.
    wait_js(page, f"() => /\\d/.test(document.querySelector('{TILE} dd.fps').textContent)",
            "fps on the tile")
    wait_js(page, """() => { const k = document.querySelector('.kind[data-kind="face"]');
        return k && k.dataset.workers === '2' && k.dataset.lag !== ''; }""",
            "scaling panel: two workers (one per model group)")
    assert page.locator("#banner").is_hidden()
    page.wait_for_timeout(3000)  # a few more frames and sparkline points
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"))

    # The large view: one canvas per model, side by side.
    page.click(f"{TILE} canvas")
    wait_js(page, "() => document.querySelector('#detail').open", "large view open")
    assert page.locator("#detail .d-views canvas").count() == 2
    page.wait_for_timeout(1500)
    page.screenshot(path=str(ARTIFACTS / "dashboard-detail.png"))
    page.keyboard.press("Escape")
    wait_js(page, "() => !document.querySelector('#detail').open", "large view closed")
