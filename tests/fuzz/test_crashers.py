"""Every input that once broke a contract (tests/fuzz/crashers.json), replayed through that
contract on every run. Add one: {"name", "found_by", "contract", "b64", "note"}, at most 64 KiB
of bytes; inputs too big for that are made by recipe (tests/fuzz/corpus.py)."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from faust.types.tuples import ConsumerMessage

from evi import wire
from evi.topics import Topics
from evi.wire import FrameMeta, frame_headers
from processors.handler import FrameHandler
from processors.pipeline import FramePipeline
from processors.settings import ProcessorSettings
from tests.fuzz.contract import TARGETS, check_decode
from tests.fuzz.corpus import corpus
from tests.fuzz.test_handler_fuzz import REASON
from tests.fuzz.test_jpeg_fuzz import run_child
from tests.fuzz.test_wire_frames import SAFE_STREAM
from tests.fuzz.test_wire_frames import check as check_frame
from tests.fuzz.test_wire_records import check_dead_letter, check_result, check_stream_info
from tests.processors.fakes import FakeEvent, FakeSink

CRASHERS = Path(__file__).with_name("crashers.json")
ENTRIES: list[dict[str, Any]] = json.loads(CRASHERS.read_text())
CONTRACTS = {"decode_jpeg", "handler", "parse_frame", "valid_stream_id", "decode_result",
             "decode_stream_info", "dead_letter_headers"}  # fmt: skip


def by(contract: str) -> list[Any]:
    return [pytest.param(e, id=e["name"]) for e in ENTRIES if e["contract"] == contract]


def data(entry: dict[str, Any]) -> bytes:
    return base64.b64decode(entry["b64"])


def unb64(v: str | None) -> bytes | None:
    return None if v is None else base64.b64decode(v)


def test_the_crashers_file_is_well_formed() -> None:
    names = [e["name"] for e in ENTRIES]
    assert len(set(names)) == len(names)
    for e in ENTRIES:
        assert set(e) == {"name", "found_by", "contract", "b64", "note"}, e["name"]
        assert e["contract"] in CONTRACTS and re.fullmatch(r"[a-z0-9.-]+", e["name"]), e["name"]
        assert 0 < len(data(e)) <= 64 * 1024, e["name"]


@pytest.mark.parametrize("entry", by("decode_jpeg"))
@pytest.mark.parametrize("target", list(TARGETS))
def test_jpeg_crashers(entry: dict[str, Any], target: str) -> None:
    check_decode(data(entry), target)  # raises Broken (an AssertionError) with what broke


def test_jpeg_crashers_within_the_memory_bound() -> None:
    """In a child, whose peak RSS is the decodes' own (this process's is every test's)."""
    proc = run_child(["replay", str(CRASHERS)], 120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


@pytest.mark.parametrize("entry", by("parse_frame"))
def test_parse_frame_crashers(entry: dict[str, Any]) -> None:
    doc = json.loads(data(entry))
    headers = [(n, unb64(v)) for n, v in doc["headers"]]
    check_frame(unb64(doc["key"]), unb64(doc["value"]), headers, doc["max_bytes"])


@pytest.mark.parametrize("entry", by("valid_stream_id"))
def test_valid_stream_id_crashers(entry: dict[str, Any]) -> None:
    stream = data(entry).decode()
    assert wire.valid_stream_id(stream) == bool(SAFE_STREAM.match(stream))


@pytest.mark.parametrize("entry", by("decode_result"))
def test_decode_result_crashers(entry: dict[str, Any]) -> None:
    check_result(data(entry))


@pytest.mark.parametrize("entry", by("decode_stream_info"))
def test_decode_stream_info_crashers(entry: dict[str, Any]) -> None:
    check_stream_info(data(entry))


@pytest.mark.parametrize("entry", by("dead_letter_headers"))
def test_dead_letter_headers_crashers(entry: dict[str, Any]) -> None:
    doc = json.loads(data(entry))
    headers = [(n, unb64(v)) for n, v in doc["headers"]] * doc["repeat"]
    check_dead_letter(headers, doc["cut"])


@pytest.mark.parametrize("entry", by("handler"))
async def test_handler_crashers(entry: dict[str, Any], pipeline: FramePipeline) -> None:
    """The JPEG as a frame record with valid headers, in a batch between two good frames."""
    s = ProcessorSettings()
    sink = FakeSink()
    handler = FrameHandler(s, pipeline, sink, lambda p, o, ts: None)
    face = dict(corpus())["astronaut/simplejpeg-q10-444"]
    events = [frame(1, face), frame(2, data(entry)), frame(3, face)]
    deliveries = await asyncio.wait_for(handler.handle(events), 30)  # type: ignore[arg-type]
    for delivery in deliveries:
        await delivery
    results = sink.sent.get(Topics(s.topics).results("face"), [])
    letters = sink.sent.get(Topics(s.topics).dlq("face"), [])
    assert len(results) + len(letters) == 3
    assert all(REASON.match(dict(h).get("evi-dlq-reason", b"")) for _, _, h in letters)


def frame(offset: int, jpeg: bytes) -> FakeEvent:
    meta = FrameMeta("cam1", offset, int(time.time() * 1000), 512, 512)
    msg = ConsumerMessage("evi.frames.face", 0, offset, time.time(), 0, frame_headers(meta),
                          b"cam1", jpeg, None)  # fmt: skip
    return FakeEvent(msg, [])
