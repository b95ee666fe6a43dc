"""A processor that cannot keep up, for browser tests of overload: it reads a kind's frames from
the real broker and writes each result `behind_s` after its frame was captured (one box per
frame), so results arrive long after their frames left the gateway's frame cache.

Streams named in `drop_stale` answer as a `drop-stale` processor behind real time does: every
due frame is stale, and `processors.fairness.StalePolicy` (the processors' own code) keeps about
one per stream per `keep_ms`; the others answer every frame (`process-all`, the backlog)."""

from __future__ import annotations

import threading
import time
from collections import deque

from confluent_kafka import Consumer, Producer

from evi.settings import KafkaSettings
from evi.topics import Topics
from evi.wire import Detection, FrameMeta, Result, encode_result, parse_frame
from processors.fairness import Candidate, StalePolicy

MODEL = "laggard"
BOX = Detection("face", 0.9, 0.25, 0.2, 0.75, 0.85)


class Laggard:
    def __init__(self, kafka: KafkaSettings, topics: Topics, kind: str, behind_s: float,
                 drop_stale: set[str], keep_ms: int = 1000) -> None:  # fmt: skip
        self.kind = kind
        self.behind_ms = int(behind_s * 1000)
        self.drop_stale = drop_stale
        self.stale = StalePolicy(max_age_ms=self.behind_ms // 2, keep_ms=keep_ms)
        self.frames_topic = topics.frames(kind)
        self.results_topic = topics.results(kind)
        self.consumer = Consumer({**kafka.client_config(), "group.id": f"{topics.prefix}-laggard",
                                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
        self.producer = Producer(kafka.client_config())
        self.waiting: deque[FrameMeta] = deque()  # read, not yet due (capture order per stream)
        self.answered: dict[str, int] = {}
        self.skipped: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="laggard", daemon=True)

    def __enter__(self) -> Laggard:
        self.consumer.subscribe([self.frames_topic])
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(15)
        self.consumer.close()
        self.producer.flush(10)

    def _run(self, max_s: float = 300.0) -> None:
        deadline = time.monotonic() + max_s  # bounded whatever the test does
        while not self._stop.is_set() and time.monotonic() < deadline:
            for m in self.consumer.consume(200, timeout=0.1):
                if m.error() is None:
                    self.waiting.append(parse_frame(m.key(), m.value(), m.headers()))
            self._answer_due(int(time.time() * 1000))
            self.producer.poll(0)

    def _answer_due(self, now_ms: int) -> None:
        due: list[FrameMeta] = []
        while self.waiting and now_ms - self.waiting[0].ts_ms >= self.behind_ms:
            due.append(self.waiting.popleft())
        stale = [f for f in due if f.stream in self.drop_stale]
        keep = self.stale.plan([Candidate(f.stream, f.ts_ms) for f in stale], now_ms)
        kept = {id(f) for f, k in zip(stale, keep, strict=True) if k}
        for f in due:
            if f.stream in self.drop_stale and id(f) not in kept:
                self.skipped[f.stream] = self.skipped.get(f.stream, 0) + 1
                continue
            r = Result(f.stream, f.seq, f.ts_ms, now_ms, self.kind, MODEL, [BOX], 5.0, f.width,
                       f.height)
            self.producer.produce(self.results_topic, key=f.stream.encode(),
                                  value=encode_result(r))
            self.answered[f.stream] = self.answered.get(f.stream, 0) + 1
