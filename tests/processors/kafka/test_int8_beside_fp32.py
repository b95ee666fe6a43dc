"""FP32 and INT8 of a kind at once, on the real broker: `evi process --kind face` (the default,
blazeface-short, group evi-processor-face) and `--model blazeface-short-int8` (its own group,
…-face-blazeface-short-int8) read the same frames topic; each group answers every (stream, seq)
exactly once, in order, and the two agree on where the faces are."""

from __future__ import annotations

from collections import defaultdict

import pytest

from evi.settings import REPO_ROOT, KafkaSettings
from evi.topics import Topics
from evi.wire import Result
from processors.models import default_models
from processors.quantize import calibration_images, quantize_model
from tests.helpers import free_port, log_tail, wait_until
from tests.processors.conftest import iou
from tests.processors.kafka.util import (
    describe,
    duplicates,
    in_order,
    processor,
    produce,
    results,
    status,
)

pytestmark = pytest.mark.kafka

STREAMS = [f"cam{i}" for i in range(4)]
FRAMES = 20
FP32, INT8 = "blazeface-short", "blazeface-short-int8"


@pytest.fixture(scope="module")
def int8_ir() -> None:
    """The IR `make test`'s set-up makes (kept when current: a digest check, ~5 s)."""
    catalog = default_models()
    by_name = {m.name: m for m in catalog.choices("face")}
    quantize_model(by_name[INT8], by_name[FP32], REPO_ROOT / ".cache", calibration_images(), "face")


def by_model(got: list[Result]) -> dict[str, list[Result]]:
    out: dict[str, list[Result]] = defaultdict(list)
    for r in got:
        out[r.model].append(r)
    return out


def test_fp32_and_int8_groups_each_answer_every_frame_of_the_same_topic(
    kafka: KafkaSettings, topics: Topics, int8_ir: None
) -> None:
    ports = free_port(), free_port()
    groups = topics.group("face"), topics.group("face", INT8)
    assert groups[0] != groups[1]
    with (
        processor("fp32", kafka, topics, ports[0]),
        processor("int8", kafka, topics, ports[1], "--model", INT8),
    ):
        wait_until(lambda: all(status(p, "/readyz") == 200 for p in ports), 90, "both ready",
                   step=0.5)  # fmt: skip
        sent = produce(kafka, topics.frames("face"), STREAMS, range(FRAMES), partitions=4)
        want = {(s, q) for s in STREAMS for q in range(FRAMES)}
        assert len(sent) == len(want)
        got: dict[str, list[Result]] = {}

        def both_complete() -> bool:
            nonlocal got
            got = by_model(results(kafka, topics.results("face")))
            return all(want <= {(r.stream, r.seq) for r in got.get(m, [])} for m in (FP32, INT8))

        try:
            wait_until(both_complete, 120, "every frame answered by both groups", step=1.0)
        except TimeoutError:
            counts = {m: len(v) for m, v in got.items()}
            raise AssertionError(f"{counts}\n{log_tail('fp32')}\n{log_tail('int8')}") from None

        assert set(got) == {FP32, INT8}
        for model in (FP32, INT8):
            mine = got[model]
            assert {(r.stream, r.seq) for r in mine} == want and len(mine) == len(want)
            assert duplicates(mine) == 0 and in_order(mine)
            assert {r.kind for r in mine} == {"face"}
            # Frames i % 10 == 9 of the sample clip show no face; the others exactly one.
            assert [len(r.detections) for r in mine] == [int(r.seq % 10 != 9) for r in mine]

        fp32 = {(r.stream, r.seq): r for r in got[FP32]}
        for r in got[INT8]:
            for q, f in zip(r.detections, fp32[(r.stream, r.seq)].detections, strict=True):
                assert iou((q.x1, q.y1, q.x2, q.y2), (f.x1, f.y1, f.x2, f.y2)) >= 0.8, r
                assert abs(q.score - f.score) < 0.1, r

        # Kafka's own view: each group committed the whole topic (lag 0 on every partition).
        def committed(group: str) -> bool:
            rows = describe(kafka, group)
            return len(rows) == 4 and all(lag == 0 for _, _, lag in rows.values())

        for group in groups:
            wait_until(lambda g=group: committed(g), 30, f"{group} committed", step=1.0)
