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


def odd_sampling_jpeg() -> bytes:
    """A real JPEG whose luma is sampled 1x4 (libjpeg-turbo's 4:4:1): simplejpeg's header
    helper raised KeyError on it, which once stopped every worker of the kind."""
    data = bytearray(simplejpeg.encode_jpeg(np.ascontiguousarray(jpeg_image()), 80, "RGB", "444"))
    sof = data.index(b"\xff\xc0")
    data[sof + 11] = 0x14
    return bytes(data)


def jpeg_image() -> np.ndarray:
    return np.full((64, 64, 3), 128, np.uint8)


def progressive_bomb() -> bytes:
    """8192x8192 progressive: ~1.5 MB that cost ~0.8 s and ~400 MiB to decode."""
    import cv2

    image = np.zeros((8192, 8192, 3), np.uint8)
    image[::64] = 200
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    assert ok
    return bytes(buf.tobytes())


def test_every_class_of_bad_frame_is_a_dead_letter_and_the_worker_stays_up(
    kafka: KafkaSettings, topics: Topics
) -> None:
    from tests.processors.faulty_worker import mark

    good = jpeg(0)
    limit = topics.settings.max_message_bytes
    filler = [(f"x-{i:03d}", b"h" * 1000) for i in range(65)]  # 65 KB of headers
    near_limit = b"N" * (limit - 1200 - sum(len(k) + len(v) for k, v in filler))
    bad: dict[str, tuple[bytes, list[tuple[str, bytes]], str]] = {
        # name → (value, headers, reason)
        "huge-ts": (good, headers("bad", 0, **{"evi-ts": b"9" * 300}), "bad-header"),
        "negative-seq": (good, headers("bad", 1, **{"evi-seq": b"-1"}), "bad-header"),
        "zero-width": (good, headers("bad", 2, **{"evi-width": b"0"}), "bad-header"),
        "width-over-65535": (good, headers("bad", 3, **{"evi-width": b"70000"}), "bad-header"),
        "underscored-seq": (good, headers("bad", 4, **{"evi-seq": b"1_0"}), "bad-header"),
        "odd-sampling": (odd_sampling_jpeg(), headers("bad", 5), "corrupt-jpeg"),
        "codec-keyerror": (mark(good, "raise"), headers("bad", 6), "frame-error"),
        "progressive-bomb": (progressive_bomb(), headers("bad", 7), "decode-budget"),
        "dead-letter-over-limit": (near_limit, headers("bad", 8) + filler, "not-jpeg"),
        "12-bit": (good.replace(b"\xff\xc0\x00\x11\x08", b"\xff\xc0\x00\x11\x0c", 1),
                   headers("bad", 9), "unsupported-jpeg"),
    }  # fmt: skip
    frames = topics.frames("face")
    p = producer(kafka)
    for seq in range(12):
        for stream in ("ok1", "ok2"):
            hs = frame_headers(FrameMeta(stream, seq, 1_700_000_000_000 + seq, W, H, "test"))
            p.produce(frames, good, stream.encode(), partition=0, headers=list(hs))
        if seq < len(bad):
            value, hs2, _ = list(bad.values())[seq]
            p.produce(frames, value, b"bad", partition=0, headers=hs2)
    assert p.flush(30) == 0

    port = free_port()
    with processor("dlq-classes", kafka, topics, port, faulty=True) as proc:
        want = {(s, q) for s in ("ok1", "ok2") for q in range(12)}
        got = wait_results(kafka, topics, want, 120, logs=("dlq-classes",))
        wait_until(lambda: len(read(kafka, topics.dlq("face"))) >= len(bad), 60, "dead letters")
        assert proc.poll() is None, "the worker keeps going"
        metrics = scrape(port)
    assert sorted((r.stream, r.seq) for r in got) == sorted(want), "each good frame exactly once"
    letters = read(kafka, topics.dlq("face"))
    by_seq = {int(dict(hs)["evi-seq"] if dict(hs).get("evi-seq", b"x").isdigit() else -1): hs
              for _, _, _, hs in letters}  # fmt: skip
    assert len(letters) == len(bad), log_tail("dlq-classes")
    reasons = sorted(dict(hs)["evi-dlq-reason"].decode() for _, _, _, hs in letters)
    assert reasons == sorted(r for _, _, r in bad.values())
    over = dict(by_seq[8])
    assert b"dropped" in over["evi-dlq-cut"], over["evi-dlq-cut"]
    for reason in {r for _, _, r in bad.values()}:
        labels = (("kind", "face"), ("model", "blazeface-short"), ("reason", reason))
        n = sum(1 for _, _, r in bad.values() if r == reason)
        assert metrics[("evi_processor_dead_letters_total", labels)] == n, reason
