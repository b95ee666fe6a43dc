"""A frame that kills its worker (an abort, a segfault, a hang past the frame budget) is
quarantined after at most two deaths, and every other frame gets its result: the worker is
restarted here as an orchestrator would (processors/quarantine.py)."""

from __future__ import annotations

import json
import time

import pytest

from evi.settings import KafkaSettings
from evi.topics import Topics
from evi.wire import FrameMeta, frame_headers
from tests.helpers import REPO, free_port, log_tail
from tests.processors.faulty_worker import mark
from tests.processors.kafka.util import H, W, jpeg, processor, producer, read, results

pytestmark = pytest.mark.kafka

STREAMS = [f"q{i}" for i in range(4)]
FRAMES = 40
POISON = ("q1", 17)
MAX_DEATHS = 2  # one with the frame in a batch, one with it running alone (quarantine_deaths=1)


def produce_with_poison(kafka: KafkaSettings, topics: Topics, fault: str) -> None:
    p = producer(kafka)
    base = int(time.time() * 1000)
    for seq in range(FRAMES):
        for i, stream in enumerate(STREAMS):
            data = jpeg(seq % 10)
            if (stream, seq) == POISON:
                data = mark(data, fault)
            meta = FrameMeta(stream, seq, base + seq, W, H, producer="test")
            p.produce(topics.frames("face"), data, stream.encode(), partition=i % 4,
                      headers=list(frame_headers(meta)))  # fmt: skip
    assert p.flush(30) == 0


@pytest.mark.parametrize("fault", ["abort", "segv", "hang"])
def test_a_frame_that_kills_its_worker_is_quarantined_and_the_rest_flows(
    kafka: KafkaSettings, topics: Topics, fault: str
) -> None:
    produce_with_poison(kafka, topics, fault)
    want = {(s, q) for s in STREAMS for q in range(FRAMES)} - {POISON}
    env = {"EVI_FRAME_BUDGET_S": "4"}  # the hang is found after 4 s, not the default 10
    deaths: list[int | None] = []
    t0 = time.monotonic()
    got: set[tuple[str, int]] = set()
    letters: list[dict[str, bytes]] = []
    for start in range(MAX_DEATHS + 2):  # bounded: the test fails if more deaths were needed
        name = f"quarantine-{fault}-{start}"
        with processor(name, kafka, topics, free_port(), env=env, faulty=True,
                       wait_web=False) as proc:  # fmt: skip
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and proc.poll() is None:
                got = {(r.stream, r.seq) for r in results(kafka, topics.results("face"))}
                letters = [dict(h) for _, _, _, h in read(kafka, topics.dlq("face"), 5)]
                if want <= got and letters:
                    break
                time.sleep(1.0)
            code = proc.poll()
        if code is None:
            break
        deaths.append(code)
        assert f"fault injection: {fault}" in log_tail(name, 400), log_tail(name)
    took = time.monotonic() - t0
    report = {"fault": fault, "deaths": len(deaths), "exit_codes": deaths,
              "seconds": round(took, 1), "results": len(got), "dead_letters": len(letters)}
    print(json.dumps(report))
    out = REPO / "test-artifacts" / f"quarantine-{fault}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report))
    assert 1 <= len(deaths) <= MAX_DEATHS, report
    assert got == want, f"missing {sorted(want - got)[:5]}, extra {sorted(got - want)[:5]}"
    assert [d["evi-dlq-reason"] for d in letters] == [b"quarantined"], letters
    (letter,) = letters
    assert (letter["evi-stream"], letter["evi-seq"]) == (b"q1", b"17")
    assert letter["evi-dlq-origin"].startswith(topics.frames("face").encode() + b"[1]@")
