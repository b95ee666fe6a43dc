"""The vertical slice on the real broker: sample clip → producer → Kafka → processor → results
topic → gateway websocket, every frame accounted for, faces where the astronaut is."""

from __future__ import annotations

import json
import time
import urllib.request

import numpy as np
import pytest
from websockets.sync.client import connect

from evi.settings import KafkaSettings
from evi.topics import Topics
from gateway.fanout import unpack_message
from producers.sample import SampleClip
from tests.fixtures.faces import ASTRONAUT_FACE
from tests.gateway.gw import TOKEN, bearer
from tests.helpers import common, evi_process, free_port, http_ok, log_tail, wait_until

pytestmark = pytest.mark.kafka

FRAMES = 120


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def true_face(clip: SampleClip, i: int) -> tuple[float, float, float, float] | None:
    """The measured astronaut face box carried into frame i, normalised to 0..1."""
    placed = clip.placement(i)
    if placed is None:
        return None
    scale, dx, dy = placed
    x1, y1, x2, y2 = ASTRONAUT_FACE
    return (
        (x1 * scale + dx) / clip.width, (y1 * scale + dy) / clip.height,
        (x2 * scale + dx) / clip.width, (y2 * scale + dy) / clip.height,
    )


def test_sample_clip_through_whole_pipeline(kafka: KafkaSettings, topics: Topics) -> None:
    port = free_port()
    flags = common(kafka, topics.prefix)
    with (
        # Keep every frame of the clip so each result can be paired with its picture even when
        # the processor trails the producer by the whole clip (first inference warms up).
        evi_process("slice-gateway", "gateway", "--port", str(port), "--metrics-port",
                    str(free_port()), *flags,
                    env={"EVI_FRAME_CACHE": str(FRAMES), "EVI_AUTH_TOKEN": TOKEN}),
        evi_process("slice-processor", "process", "--kind", "face", "--web-port", "0", *flags),
    ):
        wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/readyz"), 60, "gateway ready")
        got: list[dict[str, object]] = []
        with connect(f"ws://127.0.0.1:{port}/ws/streams/slice", max_size=8 << 20,
                     additional_headers=bearer()) as ws:
            hello, _ = unpack_message(ws.recv(timeout=10))  # type: ignore[arg-type]
            assert hello["type"] == "hello"
            with evi_process(
                "slice-producer", "produce", "--source", "sample:", "--stream", "slice",
                "--kind", "face", "--fps", "40", "--count", str(FRAMES), *flags,
            ) as producer:
                deadline = time.monotonic() + 120
                while len(got) < FRAMES and time.monotonic() < deadline:
                    try:
                        raw = ws.recv(timeout=5)
                    except TimeoutError:
                        continue
                    header, jpeg = unpack_message(raw)  # type: ignore[arg-type]
                    if header["type"] == "result":
                        assert jpeg.startswith(b"\xff\xd8"), "the frame's JPEG comes with it"
                        got.append(header)
                assert producer.wait(30) == 0, log_tail("slice-producer")
        assert len(got) == FRAMES, (
            f"got {len(got)} results\n{log_tail('slice-processor')}\n{log_tail('slice-gateway')}"
        )
        seqs = [int(h["seq"]) for h in got]  # type: ignore[call-overload]
        assert seqs == list(range(FRAMES)), "one result per frame, in order"

        clip = SampleClip(width=640, height=480, frames=FRAMES)
        faces_seen = no_face_frames = 0
        for h in got:
            seq = int(h["seq"])  # type: ignore[call-overload]
            dets = h["detections"]
            assert isinstance(dets, list)
            truth = true_face(clip, seq)
            if truth is None:
                no_face_frames += 1
                assert dets == [], f"frame {seq} shows no face but got {json.dumps(dets)}"
                continue
            faces_seen += 1
            best = max((iou(tuple(d["box"]), truth) for d in dets), default=0.0)
            assert best >= 0.5, f"frame {seq}: best IoU {best:.2f} with {truth}, got {dets}"
        assert faces_seen > FRAMES // 2 and no_face_frames >= 5
        assert np.isfinite([float(h["infer_ms"]) for h in got]).all()  # type: ignore[arg-type]

        # The registry and REST API know the stream and its numbers.
        req = urllib.request.Request(f"http://127.0.0.1:{port}/api/streams", headers=bearer())
        with urllib.request.urlopen(req, timeout=5) as r:
            streams = json.load(r)
        assert [s["stream"] for s in streams] == ["slice"]
        assert streams[0]["kinds"] == ["face"] and streams[0]["status"] == "ended"
        assert streams[0]["stats"]["results_seen"] == FRAMES
        with connect(f"ws://127.0.0.1:{port}/ws/streams/bad%20id",
                     additional_headers=bearer()) as bad:
            with pytest.raises(Exception) as closed:
                bad.recv(timeout=5)
            assert "4400" in str(closed.value)
