"""Kinds other than face on the real broker, with ground truth: pictures → `evi produce` →
Kafka → `evi process --kind person` (MediaPipe's pose detector) → results topic, each person where
we measured it; and one stream published to `face` and `person`, encoded once, answered by both."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import cv2
import pytest
from websockets.sync.client import connect

import producers.encode
from evi.kafka import ensure_topics
from evi.settings import KafkaSettings
from evi.topics import Topics
from evi.wire import Result, decode_result
from gateway.protocol import unpack_message
from producers.__main__ import main as produce_main
from tests.fixtures.faces import astronaut_face_normalised
from tests.fixtures.images import rgb_sample
from tests.fixtures.people import EYES_Y, MID_SHOULDER, PICTURE_SIZE, person_normalised
from tests.gateway.gw import TOKEN, bearer
from tests.helpers import common, consume_all, evi_process, free_port, http_ok, log_tail, wait_until
from tests.processors.conftest import iou
from tests.processors.kafka.util import processor, status

pytestmark = pytest.mark.kafka

PICTURES = ["astronaut", "camera", "coffee"]  # a person (and a face), a person, neither
ROUNDS = 2
FRAMES = ROUNDS * len(PICTURES)


@pytest.fixture
def pictures(tmp_path: Path) -> Path:
    """The pictures as files the images source reads in name order: seq i shows PICTURES[i % 3]."""
    folder = tmp_path / "pictures"
    folder.mkdir()
    for i, name in enumerate(PICTURES):
        cv2.imwrite(str(folder / f"{i}_{name}.png"), rgb_sample(name)[:, :, ::-1])
    return folder


@pytest.fixture
def encodes(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Every JPEG encode the producer makes, counted (the producer runs in this process)."""
    calls: list[int] = []
    lock = threading.Lock()
    real = producers.encode.Encoder.encode

    def counting(self: producers.encode.Encoder, frame: producers.encode.Frame) -> bytes:
        with lock:
            calls.append(frame.shape[1])
        return real(self, frame)

    monkeypatch.setattr(producers.encode.Encoder, "encode", counting)
    yield calls


def serve_and_produce(
    kafka: KafkaSettings, topics: Topics, pictures: Path, kinds: list[str],
    tile: list[dict[str, Any]] | None = None,
) -> dict[str, list[Result]]:  # fmt: skip
    """One processor per kind (its default model), then the pictures as one stream to every kind;
    the results of each kind once every frame has one (bounded: 120 s). With `tile`, a gateway
    runs too and `tile` gets the result messages its websocket sends for the stream."""
    ensure_topics(kafka, topics.specs(kinds))
    ports = {kind: free_port() for kind in kinds}
    with ExitStack() as stack:
        for kind in kinds:
            stack.enter_context(processor(f"kinds-{kind}", kafka, topics, ports[kind],
                                          "--kind", kind))  # fmt: skip
        if tile is not None:
            tile_reader(stack, kafka, topics, tile, len(kinds) * FRAMES)
        # Ready = its partitions are assigned: frames sent from now on are all read.
        wait_until(lambda: all(status(p, "/readyz") == 200 for p in ports.values()), 90,
                   "processors ready", step=0.5)  # fmt: skip
        kind_flags = [f for kind in kinds for f in ("--kind", kind)]
        code = produce_main([
            "--source", str(pictures), "--stream", "people", *kind_flags, "--loop",
            "--count", str(FRAMES), "--fps", "0", *common(kafka, topics.prefix),
        ])  # fmt: skip
        assert code == 0
        got: dict[str, list[Result]] = {}

        def complete() -> bool:
            for kind in kinds:
                got[kind] = [decode_result(m.value()) for m in
                             consume_all(kafka, topics.results(kind), 10)]  # fmt: skip
            return all({r.seq for r in got[k]} >= set(range(FRAMES)) for k in kinds)

        try:
            wait_until(complete, 120, "a result of every kind for every frame", step=1.0)
        except TimeoutError:
            tails = "\n".join(log_tail(f"kinds-{k}") for k in kinds)
            counts = {k: len(v) for k, v in got.items()}
            raise AssertionError(f"results per kind: {counts}\n{tails}") from None
    return got


def tile_reader(stack: ExitStack, kafka: KafkaSettings, topics: Topics,
                tile: list[dict[str, Any]], want: int) -> None:  # fmt: skip
    """A gateway and one websocket client of stream `people` (what one dashboard tile reads),
    collecting result messages on a thread until `want` arrive or the stack closes."""
    port = free_port()
    stack.enter_context(evi_process(
        "kinds-gateway", "gateway", "--port", str(port), "--metrics-port", str(free_port()),
        *common(kafka, topics.prefix),
        env={"EVI_FRAME_CACHE": str(FRAMES), "EVI_AUTH_TOKEN": TOKEN},
    ))  # fmt: skip
    wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/readyz"), 60, "gateway ready")
    ws = stack.enter_context(connect(f"ws://127.0.0.1:{port}/ws/streams/people",
                                     max_size=8 << 20, additional_headers=bearer()))  # fmt: skip
    hello, _ = unpack_message(ws.recv(timeout=10))  # type: ignore[arg-type]
    assert hello["type"] == "hello"
    done = threading.Event()
    stack.callback(done.set)

    def read() -> None:
        deadline = time.monotonic() + 150
        while len(tile) < want and not done.is_set() and time.monotonic() < deadline:
            try:
                header, _ = unpack_message(ws.recv(timeout=1))  # type: ignore[arg-type]
            except TimeoutError:
                continue
            except Exception:  # the socket closed with the stack
                return
            if header["type"] == "result":
                tile.append(header)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    stack.callback(thread.join, 30)  # closing waits (bounded) for the tile to see them all


def check_person(result: Result) -> None:
    """One person where we measured them on person pictures, none elsewhere."""
    name = PICTURES[result.seq % len(PICTURES)]
    assert (result.kind, result.model) == ("person", "mediapipe-pose")
    if name not in MID_SHOULDER:
        assert result.detections == [], f"seq {result.seq} ({name}): {result.detections}"
        return
    assert len(result.detections) == 1, f"seq {result.seq} ({name}): {result.detections}"
    person = result.detections[0]
    assert person.label == "person" and person.score > 0.5
    box = (person.x1, person.y1, person.x2, person.y2)
    assert iou(box, person_normalised(name)) >= 0.5, (name, box)
    assert len(person.keypoints) == 4
    (sx, sy), (w, h) = person.keypoints[2], PICTURE_SIZE
    x1, y1, x2, y2 = MID_SHOULDER[name]
    assert x1 / w <= sx <= x2 / w and y1 / h <= sy <= y2 / h, (name, person.keypoints)
    assert person.keypoints[1][1] < EYES_Y[name] / h


def test_person_kind_end_to_end_finds_each_person(
    kafka: KafkaSettings, topics: Topics, pictures: Path, encodes: list[int]
) -> None:
    got = serve_and_produce(kafka, topics, pictures, ["person"])["person"]
    assert sorted(r.seq for r in got) == list(range(FRAMES)), "one result per frame"
    assert {r.stream for r in got} == {"people"}
    for result in got:
        check_person(result)
    assert len(encodes) == FRAMES


def test_one_stream_to_face_and_person_is_encoded_once_and_answered_by_both(
    kafka: KafkaSettings, topics: Topics, pictures: Path, encodes: list[int]
) -> None:
    tile: list[dict[str, Any]] = []
    got = serve_and_produce(kafka, topics, pictures, ["face", "person"], tile)
    for kind in ("face", "person"):
        assert sorted(r.seq for r in got[kind]) == list(range(FRAMES)), kind
    # One tile (one websocket of the stream) got both kinds' results for every frame, the
    # person's keypoints with them.
    assert len(tile) == 2 * FRAMES, f"{len(tile)} results on the tile\n{log_tail('kinds-gateway')}"
    assert sorted((h["kind"], h["seq"]) for h in tile) == sorted(
        (k, s) for k in ("face", "person") for s in range(FRAMES)
    )  # fmt: skip
    people = [h for h in tile if h["kind"] == "person" and h["detections"]]
    assert len(people) == 2 * ROUNDS  # astronaut and camera, each round
    assert all(len(h["detections"][0]["keypoints"]) == 4 for h in people)
    # Each frame was encoded once, and both kinds' topics carry those very bytes.
    assert len(encodes) == FRAMES
    frames = {
        kind: {m.offset(): bytes(m.value() or b"") for m in consume_all(kafka, topics.frames(kind))}
        for kind in ("face", "person")
    }
    assert len(frames["face"]) == len(frames["person"]) == FRAMES
    assert sorted(frames["face"].values()) == sorted(frames["person"].values())
    for result in got["person"]:
        check_person(result)
    for result in got["face"]:
        name = PICTURES[result.seq % len(PICTURES)]
        assert result.model == "blazeface-short"
        if name == "astronaut":
            (face,) = result.detections
            assert iou((face.x1, face.y1, face.x2, face.y2), astronaut_face_normalised()) >= 0.5
            assert face.keypoints == ()  # face results stay as they were
        elif name == "coffee":
            assert result.detections == []
