"""The dashboard's per-model view in a real headless Chromium, with a real gateway on the real
broker: one stream published to two kinds (`face` and `person`), answered by three models —
face FP32 and INT8 (`blazeface-short`, `blazeface-short-int8`) and a person model with keypoints.

The result records are produced by this test (records made by hand, like the gateway tests'),
not by processors: what is tested is the dashboard — one tile with both kinds' boxes, the legend
(a colour and a toggle per model), keypoints drawn, toggles that change the pixels and the DOM,
and the scaling panel listing every consumer group. The processors' own answers are tested in
tests/processors and tests/test_pipeline.py. Screenshots go to test-artifacts/."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import cv2
import numpy as np
import pytest
from confluent_kafka import Consumer
from playwright.sync_api import Page

from evi.kafka import ensure_topics
from evi.settings import KafkaSettings
from evi.topics import Topics
from evi.wire import Detection
from tests.e2e.browser import chromium_page
from tests.gateway.feed import Feeder
from tests.gateway.gw import gateway
from tests.helpers import REPO

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]

ARTIFACTS = REPO / "test-artifacts"
STREAM = "multi-1"
TILE = f'.tile[data-stream="{STREAM}"]'
FACE, FACE_INT8, PERSON = "blazeface-short", "blazeface-short-int8", "mediapipe-pose"
# What each model "found" on every frame: the INT8 box a little off the FP32 one, as quantised
# models are; the person with MediaPipe's four alignment keypoints (docs/wire-format.md).
KEYPOINTS = ((0.5, 0.86), (0.5, 0.12), (0.5, 0.42), (0.5, 0.2))
ANSWERS = {
    ("face", FACE): [Detection("face", 0.93, 0.40, 0.16, 0.56, 0.38)],
    ("face", FACE_INT8): [Detection("face", 0.88, 0.42, 0.19, 0.58, 0.41)],
    ("person", PERSON): [Detection("person", 0.81, 0.22, 0.08, 0.78, 0.95, KEYPOINTS)],
}
FPS = 4
# The gateway's copy of KEDA's lagThreshold and maxReplicaCount, off their defaults (700, 12).
SCALER = {"EVI_LAG_THRESHOLD": "250", "EVI_MAX_REPLICAS": "7"}
MAX_FRAMES = 600  # the feeder's bound (150 s at 4 fps): the test needs ~20 s

# Pixels of the canvas within 40 of a colour on every channel (the frame itself is grey).
COUNT_COLOUR = """([sel, hex]) => {
  const c = document.querySelector(sel + ' canvas');
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  const want = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
  let n = 0;
  for (let i = 0; i < d.length; i += 4) {
    if (Math.abs(d[i] - want[0]) < 40 && Math.abs(d[i + 1] - want[1]) < 40 &&
        Math.abs(d[i + 2] - want[2]) < 40) n++;
  }
  return n;
}"""


def grey_jpeg(seq: int) -> bytes:
    """A real 640x480 JPEG in greys only, so model colours on the canvas are the overlay's."""
    img = np.full((480, 640, 3), 48, np.uint8)
    cv2.circle(img, (320, 120), 50, (110, 110, 110), -1)
    cv2.rectangle(img, (220, 180), (420, 450), (90, 90, 90), -1)
    cv2.putText(img, f"#{seq}", (10, 40), cv2.FONT_HERSHEY_SIMPLEX, 1, (200, 200, 200), 2)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 85])
    assert ok
    return buf.tobytes()


@contextmanager
def feeding(kafka: KafkaSettings, topics: Topics) -> Iterator[None]:
    """Frames of one stream, each encoded once and published to both kinds' frames topics, and
    every model's result for it; plus a member in each model's consumer group (what the scaling
    panel lists), all until the test ends or MAX_FRAMES."""
    feed = Feeder(kafka, topics)
    feed.register(STREAM, kinds=("face", "person"))
    groups = [topics.group("face"), topics.group("face", FACE_INT8), topics.group("person")]
    members = []
    for gid in groups:
        c = Consumer(kafka.client_config() | {"group.id": gid, "enable.auto.commit": True})
        c.subscribe([topics.frames("person" if "person" in gid else "face")])
        members.append(c)
    stop = threading.Event()

    def run() -> None:
        for seq in range(MAX_FRAMES):
            if stop.is_set():
                break
            ts = int(time.time() * 1000)
            data = grey_jpeg(seq)
            for kind in ("face", "person"):
                feed.frame(STREAM, seq, ts, data, kind)
            for (kind, model), dets in ANSWERS.items():
                feed.result(STREAM, seq, ts, kind, model, dets)
            feed.producer.flush(5)
            for c in members:
                c.poll(0)
            stop.wait(1 / FPS)

    t = threading.Thread(target=run, name="feeder", daemon=True)
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join(10)
        for c in members:
            c.close()


def wait_js(page: Page, expr: str, what: str, timeout_s: float = 30) -> None:
    try:
        page.wait_for_function(expr, timeout=timeout_s * 1000, polling=200)
    except Exception as e:  # Playwright's TimeoutError: say what we waited for
        raise AssertionError(f"timed out waiting for {what}") from e


def colour_pixels(page: Page, colour: str) -> int:
    return int(page.evaluate(f"({COUNT_COLOUR})(['{TILE}', '{colour}'])"))


def keypoints_drawn(page: Page) -> int:
    return int(page.evaluate(f"() => +document.querySelector('{TILE} canvas').dataset.keypoints"))


def toggle(page: Page, model: str, shown_after: bool) -> None:
    page.click(f'.legend-model[data-model="{model}"]')
    wait_js(page, f"""() => document.querySelector('.legend-model[data-model="{model}"]')
        .getAttribute('aria-pressed') === '{str(shown_after).lower()}'""", f"{model} toggled")


def test_one_tile_shows_two_kinds_and_the_legend_toggles_each_model(
    kafka: KafkaSettings, topics: Topics
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    ensure_topics(kafka, topics.specs(["face", "person"]))
    with (gateway(kafka, topics, "e2e-models-gateway", env=SCALER) as gw, feeding(kafka, topics),
          chromium_page() as page):
        page.goto(gw.dashboard())
        # One tile, three models of two kinds on the same frame, keypoints drawn.
        wait_js(page, f"""() => {{ const t = document.querySelector('{TILE}');
            return t && t.dataset.models === '3' && +t.dataset.boxes === 3; }}""",
                "one tile with the boxes of three models", 60)
        assert page.locator(".tile").count() == 1
        assert keypoints_drawn(page) == len(KEYPOINTS)
        dets = page.locator(f"{TILE} dd.dets").inner_text()
        assert "face" in dets and "person" in dets, dets

        # The legend: a button per model, its kind, its colour; each colour is on the canvas.
        legend = page.eval_on_selector_all(".legend-model", """bs => bs.map(b => [b.dataset.model,
            b.dataset.kind, b.style.getPropertyValue('--c'), b.getAttribute('aria-pressed')])""")
        assert sorted((m, k, p) for m, k, _, p in legend) == [
            (FACE, "face", "true"), (FACE_INT8, "face", "true"), (PERSON, "person", "true")]
        colour = {m: c for m, _, c, _ in legend}
        assert len(set(colour.values())) == 3, colour
        before = {m: colour_pixels(page, c) for m, c in colour.items()}
        assert all(n > 300 for n in before.values()), before
        page.screenshot(path=str(ARTIFACTS / "dashboard-models.png"))

        # INT8 off: its pixels go, FP32's and the person's stay; one box fewer in the DOM.
        toggle(page, FACE_INT8, False)
        wait_js(page, f"() => +document.querySelector('{TILE}').dataset.boxes === 2",
                "two boxes with INT8 hidden")
        assert colour_pixels(page, colour[FACE_INT8]) < 50
        assert colour_pixels(page, colour[FACE]) > 300
        assert colour_pixels(page, colour[PERSON]) > 300
        # FP32 off too: only the person is left, keypoints still drawn.
        toggle(page, FACE, False)
        wait_js(page, f"() => +document.querySelector('{TILE}').dataset.boxes === 1",
                "one box with both face models hidden")
        assert colour_pixels(page, colour[FACE]) < 50
        assert keypoints_drawn(page) == len(KEYPOINTS)
        page.screenshot(path=str(ARTIFACTS / "dashboard-models-person-only.png"))
        # The person off, FP32 back: its keypoints go with it.
        toggle(page, PERSON, False)
        toggle(page, FACE, True)
        wait_js(page, f"""() => +document.querySelector('{TILE}').dataset.boxes === 1 &&
            +document.querySelector('{TILE} canvas').dataset.keypoints === 0""",
                "only the FP32 face box, no keypoints")
        assert colour_pixels(page, colour[PERSON]) < 50
        assert colour_pixels(page, colour[FACE]) > 300
        # All back on: as before.
        toggle(page, PERSON, True)
        toggle(page, FACE_INT8, True)
        wait_js(page, f"() => +document.querySelector('{TILE}').dataset.boxes === 3",
                "three boxes again")
        assert all(colour_pixels(page, c) > 300 for c in colour.values())

        # The scaling panel lists every consumer group, FP32 and INT8 of a kind side by side.
        wait_js(page, """() => {
            const g = (k) => [...document.querySelectorAll(`.kind[data-kind="${k}"] .groups div`)]
              .map((d) => d.dataset.model + ':' + d.dataset.workers).sort().join(',');
            return g('face') === ':1,blazeface-short-int8:1' && g('person') === ':1'; }""",
                "scaling panel: face default + INT8 groups and the person group, one worker each",
                30)
        # Beside the lag: KEDA's lagThreshold and maxReplicaCount as the gateway has them, and
        # the desired replicas of its formula within them.
        face = page.locator('.kind[data-kind="face"]')
        assert (face.get_attribute("data-threshold"), face.get_attribute("data-max-replicas")) == (
            SCALER["EVI_LAG_THRESHOLD"], SCALER["EVI_MAX_REPLICAS"])
        assert face.locator(".scaler").inner_text().startswith("threshold 250 frames/worker")
        desired = int(face.get_attribute("data-desired") or "0")
        assert 1 <= desired <= 7
        assert face.locator(".scaler").inner_text().endswith(f"desired {desired} of max 7")
        assert "threshold × workers" in face.locator(".legend").first.inner_text()
        kinds = gw.get("/api/kinds")
        assert {(k["kind"], k["lag_threshold"], k["max_replicas"]) for k in kinds} == {
            ("face", 250, 7), ("person", 250, 7)}
        page.screenshot(path=str(ARTIFACTS / "dashboard-models-scaling.png"))
