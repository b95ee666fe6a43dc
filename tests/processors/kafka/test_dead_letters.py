"""Bad frames go to evi.dlq.<kind> with reason and origin while good frames keep flowing."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pytest
import simplejpeg

from evi.settings import KafkaSettings
from evi.topics import Topics
from evi.wire import FrameMeta, frame_headers
from tests.helpers import free_port, log_tail, wait_until
from tests.processors.kafka.util import H, W, jpeg, processor, producer, read, scrape, wait_results

pytestmark = pytest.mark.kafka

LIMIT = 150_000  # --max-frame-bytes: below the topic's limit, so an oversized frame gets in


def big_jpeg() -> bytes:
    noise = np.random.default_rng(7).integers(0, 256, (H, W, 3), dtype=np.uint8)
    data: bytes = simplejpeg.encode_jpeg(noise, 95, "RGB")
    assert len(data) > LIMIT
    return data


def headers(stream: str, seq: int, **changes: bytes) -> list[tuple[str, bytes]]:
    hs = dict(frame_headers(FrameMeta(stream, seq, 0, W, H, producer="test")))
    return list((hs | changes).items())


def test_bad_frames_are_dead_lettered_and_good_ones_flow(
    kafka: KafkaSettings, topics: Topics
) -> None:
    good = jpeg(0)
    bad: dict[str, tuple[bytes, bytes, list[tuple[str, bytes]]]] = {
        # reason → (key, value, headers)
        "not-jpeg": (b"bad", b"GIF89a, not a JPEG", headers("bad", 0)),
        "corrupt-jpeg": (b"bad", good[: len(good) // 2], headers("bad", 1)),  # truncated
        "empty": (b"bad", b"", headers("bad", 2)),
        "missing-header": (b"bad", good, []),
        "bad-schema": (b"bad", good, headers("bad", 4, **{"evi-schema": b"2"})),
        "too-large": (b"bad", big_jpeg(), headers("bad", 5)),
    }
    frames = topics.frames("face")
    p = producer(kafka)
    origin: dict[str, str] = {}

    def report(reason: str, err: Any, msg: Any) -> None:
        if err is None:
            origin[reason] = f"{frames}[{msg.partition()}]@{msg.offset()}"

    # Good and bad frames interleaved on one partition, so the good after a bad one must flow.
    for seq in range(10):
        for stream in ("ok1", "ok2"):
            ts = 1_700_000_000_000 + seq
            hs = frame_headers(FrameMeta(stream, seq, ts, W, H, producer="test"))
            p.produce(frames, good, stream.encode(), partition=0, headers=list(hs))
        if seq < len(bad):
            reason = list(bad)[seq]
            key, value, hs2 = bad[reason]
            p.produce(frames, value, key, partition=0, headers=list(hs2),
                      on_delivery=functools.partial(report, reason))  # fmt: skip
    assert p.flush(30) == 0 and len(origin) == len(bad)

    port = free_port()
    with processor("dlq", kafka, topics, port, "--max-frame-bytes", str(LIMIT)) as proc:
        want = {(s, q) for s in ("ok1", "ok2") for q in range(10)}
        got = wait_results(kafka, topics, want, 90, logs=("dlq",))
        wait_until(lambda: len(read(kafka, topics.dlq("face"))) >= len(bad), 30, "dead letters")
        assert proc.poll() is None, "the worker keeps going"
        metrics = scrape(port)
    assert len(got) == len(want)
    letters = read(kafka, topics.dlq("face"))
    assert len(letters) == len(bad), log_tail("dlq")
    seen = {}
    for _, _, value, hs in letters:
        h = dict(hs)
        reason = h["evi-dlq-reason"].decode()
        seen[reason] = h["evi-dlq-origin"].decode()
        assert h["evi-dlq-error"], "a readable message says what was wrong"
        assert value == bad[reason][1], "the original bytes, for replay or inspection"
    assert seen == origin
    for reason in bad:
        labels = (("kind", "face"), ("model", "blazeface-short"), ("reason", reason))
        assert metrics[("evi_processor_dead_letters_total", labels)] == 1.0, reason
