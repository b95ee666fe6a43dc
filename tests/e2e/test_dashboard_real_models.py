"""The dashboard's per-model view END TO END, with the real models and real processes on the real
broker: one `evi produce` of the sample clip (the astronaut: a face and a person), each frame
encoded once and published to kinds `face` and `person`; `evi process --kind face`
(blazeface-short, FP32), `evi process --kind face --model blazeface-short-int8` (its INT8 twin,
its own consumer group; the IR made or kept by `evi models quantize --kind face`),
`evi process --kind person` (mediapipe-pose, keypoints); a real `evi gateway`; headless Chromium.

On the stream's one tile: boxes of all three models on the same frame, the legend naming each
model with its kind, keypoints drawn; hiding INT8 through its legend button takes its boxes off
(the tile's data-boxes and the pixels of its colour), hiding the person model takes the
keypoints off, showing all brings everything back. tests/e2e/test_dashboard_models.py tests the
same view with records made by hand (exact boxes); here the boxes are the models' own, so each
check waits for one frame (one atomic look at the canvas) that shows what it must.

Two shared cores: the sample at 2 fps, drop-stale processors with one inference thread each.
Takes ~20 s (processors ready ~8 s after the start). Screenshots go to test-artifacts/."""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any

import pytest
from playwright.sync_api import Page

from evi.kafka import ensure_topics
from evi.settings import KafkaSettings
from evi.topics import Topics
from tests.e2e.browser import chromium_page
from tests.gateway.gw import gateway
from tests.helpers import REPO, common, evi_process, free_port, log_tail, wait_until
from tests.processors.kafka.util import status

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]

ARTIFACTS = REPO / "test-artifacts"
STREAM = "astronaut"
TILE = f'.tile[data-stream="{STREAM}"]'
FACE, FACE_INT8, PERSON = "blazeface-short", "blazeface-short-int8", "mediapipe-pose"
FPS = 2
MAX_AGE_MS = 2000  # drop-stale: frames older than this are skipped (the 2 cores stay live)
# Pixels of a model's colour: its boxes drawn uncovered (~500-4000), hidden (0 seen: the sample
# has no such colours). FP32's and INT8's face boxes nearly coincide, so with both shown one may
# cover most of the other's (~120 seen): then only "not gone" is asked of each.
SHOWN, GONE = 250, 20

# One atomic look at the tile: its boxes and keypoints as drawn, and per colour the canvas pixels
# within 40 of it on every channel.
SNAPSHOT = """([sel, colours]) => {
  const t = document.querySelector(sel);
  if (!t) return null;
  const c = t.querySelector('canvas');
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  const want = colours.map((hex) => [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16)));
  const px = colours.map(() => 0);
  for (let i = 0; i < d.length; i += 4) {
    want.forEach((w, k) => {
      if (Math.abs(d[i] - w[0]) < 40 && Math.abs(d[i + 1] - w[1]) < 40 &&
          Math.abs(d[i + 2] - w[2]) < 40) px[k]++;
    });
  }
  return { models: +t.dataset.models || 0, boxes: +t.dataset.boxes || 0,
    keypoints: +c.dataset.keypoints || 0,
    px: Object.fromEntries(colours.map((h, k) => [h, px[k]])) };
}"""


def snapshot(page: Page, colours: list[str]) -> dict[str, Any]:
    got: dict[str, Any] = page.evaluate(f"({SNAPSHOT})", [TILE, colours])
    return got or {}


def wait_snapshot(page: Page, colours: list[str], ok: Any, what: str,
                  timeout_s: float = 30) -> dict[str, Any]:  # fmt: skip
    """The first look at the tile where `ok(snapshot)`; AssertionError with the last one, and
    the last with boxes (every 10th frame of the sample clip is only the background)."""
    deadline = time.monotonic() + timeout_s
    last: dict[str, Any] = {}
    boxed: dict[str, Any] = {}
    while time.monotonic() < deadline:
        last = snapshot(page, colours)
        if last and ok(last):
            return last
        boxed = last if last.get("boxes") else boxed
        page.wait_for_timeout(250)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}; "
                         f"last: {last}; last with boxes: {boxed}")  # fmt: skip


def toggle(page: Page, model: str, shown_after: bool) -> None:
    page.click(f'.legend-model[data-model="{model}"]')
    pressed = page.get_attribute(f'.legend-model[data-model="{model}"]', "aria-pressed")
    assert pressed == str(shown_after).lower(), f"{model}: aria-pressed {pressed}"


def logs() -> str:
    names = ("real-producer", "real-face", "real-face-int8", "real-person", "real-gateway")
    return "\n".join(f"--- {n}\n{log_tail(n, 15)}" for n in names)


def test_real_models_on_one_tile_and_the_legend_toggles_each(
    kafka: KafkaSettings, topics: Topics
) -> None:
    t0 = time.monotonic()
    ARTIFACTS.mkdir(exist_ok=True)
    ensure_topics(kafka, topics.specs(["face", "person"]))
    flags = common(kafka, topics.prefix)
    policy = ["--policy", "drop-stale", "--max-age-ms", str(MAX_AGE_MS), "--threads", "1"]
    ports = {name: free_port() for name in ("real-face", "real-face-int8", "real-person")}
    with contextlib.ExitStack() as stack:
        # The INT8 IR: made once, kept after (~6 s to check), while the other models load.
        quantize = stack.enter_context(evi_process("real-quantize", "models", "quantize",
                                                   "--kind", "face"))
        stack.enter_context(evi_process(
            "real-face", "process", "--kind", "face", "--web-port", str(ports["real-face"]),
            *policy, *flags))  # fmt: skip
        stack.enter_context(evi_process(
            "real-person", "process", "--kind", "person", "--web-port",
            str(ports["real-person"]), *policy, *flags))  # fmt: skip
        gw = stack.enter_context(gateway(kafka, topics, "real-gateway"))
        assert quantize.wait(60) == 0, log_tail("real-quantize")
        stack.enter_context(evi_process(
            "real-face-int8", "process", "--kind", "face", "--model", FACE_INT8, "--web-port",
            str(ports["real-face-int8"]), *policy, *flags))  # fmt: skip
        stack.enter_context(evi_process(
            "real-producer", "produce", "--source", "sample:", "--stream", STREAM,
            "--kind", "face", "--kind", "person", "--fps", str(FPS), "--loop",
            "--metrics-port", "0", *flags))  # fmt: skip
        wait_until(lambda: all(status(p, "/readyz") == 200 for p in ports.values()), 60,
                   "three processors ready", step=0.5)  # fmt: skip
        t_ready = time.monotonic() - t0
        page = stack.enter_context(chromium_page())
        page.goto(gw.dashboard())

        # One tile; a frame answered by all three models: three boxes, keypoints drawn.
        try:
            first = wait_snapshot(page, [], lambda s: s["models"] == 3 and s["boxes"] == 3
                                  and s["keypoints"] > 0, "three models' boxes and keypoints", 40)
        except AssertionError as e:
            raise AssertionError(f"{e}\n{logs()}") from None
        assert page.locator(".tile").count() == 1
        dets = page.locator(f"{TILE} dd.dets").inner_text()
        assert "face" in dets and "person" in dets, dets

        # The legend: a button per model with its kind and colour, all shown.
        legend = page.eval_on_selector_all(".legend-model", """bs => bs.map(b => [b.dataset.model,
            b.dataset.kind, b.style.getPropertyValue('--c').trim(),
            b.getAttribute('aria-pressed')])""")
        assert sorted((m, k, p) for m, k, _, p in legend) == [
            (FACE, "face", "true"), (FACE_INT8, "face", "true"), (PERSON, "person", "true")]
        colour = {m: c for m, _, c, _ in legend}
        assert len(set(colour.values())) == 3, colour
        cs = list(colour.values())

        def drawn(s: dict[str, Any], m: str) -> bool:
            return bool(s["px"][colour[m]] > SHOWN)

        def gone(s: dict[str, Any], m: str) -> bool:
            return bool(s["px"][colour[m]] < GONE)

        before = wait_snapshot(page, cs, lambda s: s["boxes"] == 3 and s["keypoints"] > 0
                               and not any(gone(s, m) for m in colour) and drawn(s, PERSON),
                               "every colour on the canvas")  # fmt: skip
        page.screenshot(path=str(ARTIFACTS / "dashboard-real-models.png"))

        # INT8 hidden: one box fewer, its colour gone; FP32's and the person's stay.
        toggle(page, FACE_INT8, False)
        int8_off = wait_snapshot(
            page, cs, lambda s: s["boxes"] == 2 and s["keypoints"] > 0 and gone(s, FACE_INT8)
            and drawn(s, FACE) and drawn(s, PERSON), "two boxes, INT8's colour gone", 20)
        # The person hidden too: only FP32's face box, no keypoints.
        toggle(page, PERSON, False)
        person_off = wait_snapshot(
            page, cs, lambda s: s["boxes"] == 1 and s["keypoints"] == 0 and gone(s, PERSON)
            and gone(s, FACE_INT8) and drawn(s, FACE), "only FP32's box, keypoints 0", 20)
        page.screenshot(path=str(ARTIFACTS / "dashboard-real-models-fp32-only.png"))
        # All shown again: as before.
        toggle(page, FACE_INT8, True)
        toggle(page, PERSON, True)
        after = wait_snapshot(page, cs, lambda s: s["boxes"] == 3 and s["keypoints"] > 0
                              and not any(gone(s, m) for m in colour) and drawn(s, PERSON),
                              "all three again", 20)  # fmt: skip

        # The scaling panel: the real groups, FP32 and INT8 of face side by side, one worker each.
        page.wait_for_function("""() => {
            const g = (k) => [...document.querySelectorAll(`.kind[data-kind="${k}"] .groups div`)]
              .map((d) => d.dataset.model + ':' + d.dataset.workers).sort().join(',');
            return g('face') === ':1,blazeface-short-int8:1' && g('person') === ':1'; }""",
                               timeout=20_000, polling=500)  # fmt: skip
        print(f"\nready {t_ready:.1f} s, total {time.monotonic() - t0:.1f} s; colours {colour}")
        for name, s in (("first", first), ("before", before), ("int8 off", int8_off),
                        ("person off", person_off), ("after", after)):
            print(f"{name}: {json.dumps(s)}")
