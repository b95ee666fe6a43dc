"""The whole frame handler under fuzz: batches of mutated JPEGs with mutated keys and headers
through processors.handler.FrameHandler and the REAL pipeline (BlazeFace on OpenVINO), with a
recording sink for the results and dead-letter topics. Contract (process-all): `handle` never
raises, and every event ends as exactly one result or one dead letter that says why."""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections import Counter

import pytest
from faust.types.tuples import ConsumerMessage

from evi.errors import BadFrame
from evi.topics import Topics
from evi.wire import FRAME_HEADERS, FrameMeta, decode_result, frame_headers, parse_frame
from processors.handler import FrameHandler
from processors.pipeline import FramePipeline
from processors.settings import ProcessorSettings
from tests.fuzz import budget
from tests.fuzz.corpus import corpus
from tests.fuzz.mutate import make_case, weights
from tests.processors.fakes import FakeEvent, FakeSink

TOPIC = "evi.frames.face"
REASON = re.compile(rb"\A[a-z][a-z0-9-]{0,31}\Z")
ORIGIN = re.compile(rb"\Aevi\.frames\.face\[(\d+)\]@(\d+)\Z")
STREAMS = ["cam1", "cam-2", "lobby.east", "x" * 128]
TRICKY = [b"", b"-1", b"1_000", b" 12", b"\xd9\xa1\xd9\xa2", b"9" * 30, b"9" * 5000, b"0",
          b"65536", b"image/png", b"2", b"\xff\xfe", b"cam1\n", "é".encode()]  # fmt: skip


class Frames:
    """Frame records from the JPEG corpus: mutated or not, with edited keys and headers."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.files = [d for _, d in corpus()]
        self.cum = weights(self.files)
        self.offset = 0

    def jpeg(self) -> bytes | None:
        rng, roll = self.rng, self.rng.random()
        if roll < 0.55:
            return make_case(rng, self.files, self.cum)[0]
        if roll < 0.9:
            return rng.choices(self.files, cum_weights=self.cum)[0]
        return rng.choice(
            [
                None,
                b"",
                b"GIF89a",
                rng.randbytes(64),
                b"\xff\xd8\xff" * 3,
                b"\xff\xd8\xff" + bytes(5 * 2**20) if rng.random() < 0.05 else b"",
            ]
        )

    def headers(self, meta: FrameMeta) -> list[tuple[str, bytes]]:
        rng = self.rng
        headers = frame_headers(meta)
        for _ in range(rng.choice((0, 0, 0, 1, 1, 2, 3))):
            op = rng.randrange(6)
            if op == 0 and headers:
                headers.pop(rng.randrange(len(headers)))
            elif op == 1 and headers:
                i = rng.randrange(len(headers))
                headers[i] = (headers[i][0], rng.choice(TRICKY))
            elif op == 2:
                headers.append((rng.choice(FRAME_HEADERS), rng.choice(TRICKY)))
            elif op == 3:
                headers.append((rng.choice(("x-trace", "é" * 300, "evi-dlq-reason")),
                                rng.randbytes(rng.choice((1, 2000, 70_000)))))  # fmt: skip
            elif op == 4:
                headers += [("x-many", b"v" * 20)] * rng.choice((10, 1000))
            else:
                rng.shuffle(headers)
        return headers

    def event(self) -> FakeEvent:
        rng = self.rng
        self.offset += 1
        stream = rng.choice(STREAMS)
        meta = FrameMeta(stream, self.offset, int(time.time() * 1000), rng.choice((512, 640, 1)),
                         rng.choice((512, 480, 65535)))  # fmt: skip
        headers = self.headers(meta)
        key = rng.choice([stream.encode()] * 6 + [None, b"other", b"k" * 1000])
        msg = ConsumerMessage(TOPIC, 0, self.offset, time.time(), 0, headers, key, self.jpeg(),
                              None)  # fmt: skip
        return FakeEvent(msg, [])


def parsed(event: FakeEvent, limit: int) -> FrameMeta | None:
    msg = event.message
    try:
        return parse_frame(msg.key, msg.value, msg.headers, limit)
    except BadFrame:
        return None


async def test_every_fuzzed_frame_ends_as_one_result_or_one_dead_letter(
    pipeline: FramePipeline,
) -> None:
    seed = budget.seed()
    seconds, max_frames = budget.seconds(25), int(20_000 * budget.scale())
    print(f"\nhandler fuzz: EVI_FUZZ_SEED={seed}, {seconds:.0f} s, at most {max_frames} frames")
    s = ProcessorSettings()
    topics = Topics(s.topics)
    sink = FakeSink()
    done: list[int] = []
    handler = FrameHandler(s, pipeline, sink, lambda p, o, ts: done.append(o))
    results = sink.sent.setdefault(topics.results("face"), [])
    letters = sink.sent.setdefault(topics.dlq("face"), [])
    frames = Frames(seed)
    reasons: Counter[str] = Counter()
    detections = batches = 0
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds and frames.offset < max_frames:
        batch = [frames.event() for _ in range(frames.rng.randint(1, 32))]
        first = batch[0].message.offset
        n_results, n_letters = len(results), len(letters)
        try:
            deliveries = await asyncio.wait_for(handler.handle(batch), 30)  # type: ignore[arg-type]
            for delivery in deliveries:
                await delivery
        except Exception as e:
            pytest.fail(f"handle raised {type(e).__name__}: {e} on the batch at offset {first} "
                        f"(EVI_FUZZ_SEED={seed})")  # fmt: skip
        batches += 1
        new_results, new_letters = results[n_results:], letters[n_letters:]
        assert len(new_results) + len(new_letters) == len(batch), (seed, first)
        lettered: set[int] = set()
        for _, _, headers in new_letters:
            h = dict(headers)
            assert REASON.match(h.get("evi-dlq-reason", b"")), (seed, h.get("evi-dlq-reason"))
            origin = ORIGIN.match(h.get("evi-dlq-origin", b""))
            assert origin is not None, (seed, h.get("evi-dlq-origin"))
            offset = int(origin.group(2))
            assert offset not in lettered, (seed, offset)
            lettered.add(offset)
            reasons[h["evi-dlq-reason"].decode()] += 1
        assert lettered <= {e.message.offset for e in batch}, (seed, first)
        kept = [e for e in batch if e.message.offset not in lettered]
        for (key, value, _), ev in zip(new_results, kept, strict=True):  # in batch order
            r, meta = decode_result(value), parsed(ev, s.frame_limit)
            assert meta is not None, (seed, ev.message.offset)  # a result only for a valid record
            assert (key, r.stream, r.seq) == (meta.stream.encode(), meta.stream, meta.seq)
            detections += len(r.detections)
        reasons["result"] += len(new_results)
    took = time.monotonic() - t0
    assert sorted(done) == list(range(1, frames.offset + 1))  # progress for every event
    print(f"  {frames.offset} frames in {batches} batches, {took:.1f} s = "
          f"{frames.offset / took:.0f} frames/s; {detections} detections; "
          f"outcomes {dict(reasons.most_common())}")  # fmt: skip
    assert frames.offset >= min(max_frames, 500), frames.offset
