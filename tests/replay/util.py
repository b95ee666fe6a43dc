"""Helpers of the replay tests: run the evi and Kafka CLIs, read topics with timestamps, build
clips with a known timeline."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from confluent_kafka import Consumer

from evi.kafka import partitions_of
from evi.settings import KafkaSettings
from evi.wire import FrameMeta, frame_headers, parse_frame
from producers.clip import ClipRecord, ClipWriter
from tests.helpers import REPO, common, consume_all, header_pairs, watermarks

KCAT = shutil.which("kcat")


def evi(*args: str, timeout: float = 120, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    """`evi <args>` as a child process; stdout and stderr captured as text."""
    return subprocess.run([sys.executable, "-m", "evi.cli", *args], cwd=REPO, text=True,
                          capture_output=True, timeout=timeout, env={**os.environ, **(env or {})},
                          check=False)


def kafka_tool(name: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """One of Kafka's own CLI tools through the bin/ wrappers (the real Java classes)."""
    return subprocess.run([str(REPO / "bin" / name), *args], cwd=REPO, text=True,
                          capture_output=True, timeout=timeout, check=False)


def kcat(*args: str, timeout: float = 60, text: bool = True) -> subprocess.CompletedProcess[str]:
    assert KCAT is not None
    return subprocess.run([KCAT, *args], text=text, capture_output=True, timeout=timeout,
                          check=False)


@dataclass
class Rec:
    partition: int
    offset: int
    ts_ms: int  # the record timestamp
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes | None]]

    def meta(self) -> FrameMeta:
        return parse_frame(self.key, self.value, self.headers)


def read_all(kafka: KafkaSettings, topic: str, timeout: float = 30.0) -> list[Rec]:
    """Every record now in `topic` (up to the end offsets seen at the call), partition order."""
    return [Rec(m.partition() or 0, m.offset() or 0, m.timestamp()[1], m.key(),
                bytes(m.value() or b""), header_pairs(m))
            for m in consume_all(kafka, topic, timeout, require_all=True)]  # fmt: skip


def end_offsets(kafka: KafkaSettings, topic: str) -> dict[int, int]:
    c = Consumer(kafka.client_config() | {"group.id": f"t-ends-{uuid.uuid4().hex[:8]}"})
    try:
        n = partitions_of(kafka, topic)
        return {p: watermarks(c, topic, p)[1] for p in range(n)}
    finally:
        c.close()


def jpeg(i: int, w: int = 64, h: int = 48) -> bytes:
    """A small real JPEG that differs per frame."""
    img = np.full((h, w, 3), (i * 37) % 256, np.uint8)
    cv2.putText(img, str(i), (2, h - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1)
    ok, buf = cv2.imencode(".jpg", img)
    assert ok
    return bytes(buf)


def write_clip(path: Path, streams: dict[str, list[int]], kind: str = "face",
               extra: list[tuple[str, bytes | None]] | None = None) -> list[ClipRecord]:
    """A clip whose frames of each stream are captured at the given epoch-ms times; records
    are written stream after stream (a recording from several partitions looks like that)."""
    recs = []
    for stream, times in streams.items():
        for seq, ts in enumerate(times):
            meta = FrameMeta(stream, seq, ts, 64, 48, producer="cam-host-7")
            headers = tuple(frame_headers(meta)) + tuple(extra or ())
            recs.append(ClipRecord(ts, stream.encode(), headers, jpeg(seq)))
    w = ClipWriter(path, {"tool": "test", "kind": kind})
    for r in recs:
        w.write(r)
    w.close()
    return recs


def produce(kafka: KafkaSettings, prefix: str, streams: list[str], count: int, fps: float
            ) -> None:
    """Sample-clip frames of each stream through the real producer (`evi produce`)."""
    from producers.__main__ import main

    args = []
    for s in streams:
        args += ["--source", "sample:", "--stream", s]
    assert main([*args, "--count", str(count), "--fps", str(fps), *common(kafka, prefix)]) == 0
