"""Property tests of the records a processor or producer writes and others read: results and
stream registry entries decode to a value in range or BadResult, nothing else; dead-letter
headers stay bounded and say when they cut."""

from __future__ import annotations

import json
import math
import re
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, seed
from hypothesis import strategies as st

from evi import wire
from evi.wire import (
    BadResult,
    Detection,
    Result,
    StreamInfo,
    dead_letter_headers,
    decode_result,
    decode_stream_info,
    encode_result,
    encode_stream_info,
    result_doc,
)
from tests.fuzz import budget
from tests.fuzz.jsonish import deep_documents, deep_values, documents, dumps, raw_tokens

SEED = budget.seed()
SAFE_STREAM = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")
SAFE_KIND = re.compile(r"\A[a-z][a-z0-9-]{0,31}\Z")
SAFE_MODEL = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
MESSAGE_MAX = 512  # a BadResult is logged per record: one short line


@pytest.fixture(autouse=True, scope="module")
def _print_seed() -> None:
    print(f"\nwire record properties: EVI_FUZZ_SEED={SEED}")


stream_ids = st.from_regex(SAFE_STREAM, fullmatch=True)
kinds = st.from_regex(SAFE_KIND, fullmatch=True)
models = st.from_regex(SAFE_MODEL, fullmatch=True)
box_floats = st.floats(-1e6, 1e6, allow_nan=False)
detections = st.builds(Detection, st.text(max_size=64), box_floats, box_floats, box_floats,
                       box_floats, box_floats)  # fmt: skip
results = st.builds(
    Result,
    stream=stream_ids,
    seq=st.integers(0, wire.MAX_SEQ),
    ts_ms=st.integers(0, wire.MAX_TS_MS),
    processed_ms=st.integers(0, wire.MAX_TS_MS),
    kind=kinds,
    model=models,
    detections=st.lists(detections, max_size=8),
    infer_ms=st.floats(0, 1e9),
    width=st.integers(0, wire.MAX_SIDE),
    height=st.integers(0, wire.MAX_SIDE),
)
stream_infos = st.builds(
    StreamInfo,
    stream=stream_ids,
    source=st.text(max_size=wire.MAX_TEXT + 20),
    kinds=st.lists(kinds, max_size=64),
    fps=st.floats(0, 10_000),
    width=st.integers(0, wire.MAX_SIDE),
    height=st.integers(0, wire.MAX_SIDE),
    status=st.sampled_from(wire.STREAM_STATUSES),
    message=st.text(max_size=wire.MAX_TEXT + 20),
    producer=st.text(max_size=wire.MAX_PRODUCER + 20),
    updated_ms=st.integers(0, wire.MAX_TS_MS),
)
# What a field may be replaced with: any JSON, the tokens Python reads but JSON forbids, deep
# nesting, and the near misses of each type (bools for ints, digit strings, floats for ints).
bad_values = st.one_of(
    documents, raw_tokens, deep_values, st.booleans(), st.integers(-(2**64), 2**64).map(str),
    st.floats(), st.sampled_from([1.0, -1, 2**53, 2**53 - 1, 2**64, 65_536, 1e308, 1e-320]),
    st.builds(str.__add__, st.sampled_from(["cam1", "face", "blazeface-short", "live", "a"]),
              st.sampled_from(["\n", "\r", "\x00", " ", "é"])),
)  # fmt: skip


@st.composite
def near_docs(draw: st.DrawFn, valid: st.SearchStrategy[Any], encode: Any) -> bytes:
    """A valid record's JSON with a few fields (top level or inside a list) changed."""
    doc: dict[str, Any] = json.loads(encode(draw(valid)))
    for _ in range(draw(st.integers(1, 4))):
        names = sorted(doc) or ["schema"]
        name = draw(st.sampled_from([*names, "extra"]))
        op = draw(st.sampled_from(["replace", "replace", "drop", "inner", "many"]))
        if op == "replace":
            doc[name] = draw(bad_values)
        elif op == "drop":
            doc.pop(name, None)
        elif op == "inner" and isinstance(doc.get(name), list) and doc[name]:
            items = doc[name]
            i = draw(st.integers(0, len(items) - 1))
            if isinstance(items[i], dict) and items[i]:  # a detection: one of its fields
                field = draw(st.sampled_from(sorted(items[i])))
                if isinstance(items[i][field], list) and items[i][field]:  # a box corner
                    j = draw(st.integers(0, len(items[i][field]) - 1))
                    items[i][field][j] = draw(bad_values)
                else:
                    items[i][field] = draw(bad_values)
            else:
                items[i] = draw(bad_values)
        elif op == "many" and isinstance(doc.get(name), list) and doc[name]:
            doc[name] = doc[name] * draw(st.integers(1, 1200))
    return dumps(doc).encode()


any_bytes = st.one_of(
    st.binary(max_size=256),
    documents.map(lambda d: dumps(d).encode()),
    deep_documents.map(str.encode),
    deep_values.map(lambda d: dumps(d).encode()),
    st.text(max_size=64).map(lambda t: t.encode("utf-16")),
)


def check_error(e: BadResult) -> None:
    text = str(e)
    assert "\n" not in text and len(text) <= MESSAGE_MAX, f"{len(text)} chars: {text[:120]}"


def check_result(data: bytes) -> None:
    """decode_result's contract: a Result with every field in range, or BadResult."""
    try:
        r = decode_result(data)
    except BadResult as e:
        check_error(e)
        return
    assert SAFE_STREAM.match(r.stream), r.stream
    assert SAFE_KIND.match(r.kind) and SAFE_MODEL.match(r.model), (r.kind, r.model)
    for name in ("seq", "ts_ms", "processed_ms", "width", "height"):
        assert type(getattr(r, name)) is int, name
    assert 0 <= r.seq <= wire.MAX_SEQ and 0 <= r.ts_ms <= wire.MAX_TS_MS
    assert 0 <= r.processed_ms <= wire.MAX_TS_MS
    assert 0 <= r.width <= wire.MAX_SIDE and 0 <= r.height <= wire.MAX_SIDE
    assert type(r.infer_ms) is float and 0 <= r.infer_ms <= 1e9
    assert len(r.detections) <= wire.MAX_DETECTIONS
    for d in r.detections:
        assert isinstance(d.label, str) and len(d.label) <= 64
        for v in (d.score, d.x1, d.y1, d.x2, d.y2):
            assert type(v) is float and math.isfinite(v) and -1e6 <= v <= 1e6
    assert r.schema == wire.RESULT_SCHEMA


def check_stream_info(data: bytes) -> None:
    """decode_stream_info's contract: a StreamInfo with every field in range, or BadResult."""
    try:
        s = decode_stream_info(data)
    except BadResult as e:
        check_error(e)
        return
    assert SAFE_STREAM.match(s.stream), s.stream
    assert len(s.kinds) <= 64 and all(SAFE_KIND.match(k) for k in s.kinds), s.kinds
    assert type(s.fps) is float and 0 <= s.fps <= 10_000
    for name in ("width", "height", "updated_ms"):
        assert type(getattr(s, name)) is int, name
    assert 0 <= s.width <= wire.MAX_SIDE and 0 <= s.height <= wire.MAX_SIDE
    assert 0 <= s.updated_ms <= wire.MAX_TS_MS
    assert s.status in wire.STREAM_STATUSES
    assert len(s.source) <= wire.MAX_TEXT and len(s.message) <= wire.MAX_TEXT
    assert len(s.producer) <= wire.MAX_PRODUCER


@seed(SEED)
@budget.examples(1000)
@given(st.one_of(near_docs(results, encode_result), any_bytes))
def test_decode_result_returns_a_result_in_range_or_bad_result(data: bytes) -> None:
    check_result(data)


@seed(SEED)
@budget.examples(1000)
@given(st.one_of(near_docs(stream_infos, encode_stream_info), any_bytes))
def test_decode_stream_info_returns_an_entry_in_range_or_bad_result(data: bytes) -> None:
    check_stream_info(data)


@seed(SEED)
@budget.examples(500)
@given(results)
def test_results_round_trip(r: Result) -> None:
    """What decode_result returns is the result as encode_result rounds it."""
    rounded = replace(
        r,
        detections=[Detection(d.label, round(d.score, 4), round(d.x1, 5), round(d.y1, 5),
                              round(d.x2, 5), round(d.y2, 5)) for d in r.detections],
        infer_ms=round(r.infer_ms, 3),
    )  # fmt: skip
    back = decode_result(encode_result(r))
    assert back == rounded
    assert result_doc(back) == result_doc(r)


@seed(SEED)
@budget.examples(500)
@given(stream_infos)
def test_stream_infos_round_trip(info: StreamInfo) -> None:
    """Free text longer than the registry keeps is cut by encode_stream_info, not refused."""
    cut = replace(info, source=info.source[: wire.MAX_TEXT], message=info.message[: wire.MAX_TEXT],
                  producer=info.producer[: wire.MAX_PRODUCER])  # fmt: skip
    assert decode_stream_info(encode_stream_info(info)) == cut


# Dead-letter headers: what a frame record may carry, within reason for one test case (the
# broker's own limit on a record is the topic's max.message.bytes).
dlq_names = st.one_of(
    st.sampled_from([*wire.FRAME_HEADERS, "evi-dlq-reason", "evi-dlq-cut", "x"]),
    st.text(max_size=300),
    st.integers(250, 400).map(lambda n: "é" * n),
    st.integers(1, 300).map(lambda n: "\U0001f600" * n),
)
dlq_values = st.one_of(
    st.none(), st.binary(max_size=64), st.text(max_size=64),
    st.integers(0, 70_000).map(lambda n: b"v" * n),
    st.integers(0, 3000).map(lambda n: "é" * n),
)  # fmt: skip


@st.composite
def original_headers(draw: st.DrawFn) -> list[tuple[str, Any]]:
    few = draw(st.lists(st.tuples(dlq_names, dlq_values), max_size=12))
    if draw(st.booleans()):  # thousands of headers: one drawn header repeated
        few += [draw(st.tuples(dlq_names, dlq_values))] * draw(st.integers(100, 5000))
    return few


def header_bytes(headers: list[tuple[str, bytes]]) -> int:
    """What the headers cost in a record: UTF-8 names plus values (Kafka's own sizes)."""
    return sum(len(n.encode("utf-8", "surrogatepass")) + len(v) for n, v in headers)


def as_bytes(v: Any) -> bytes:
    return v.encode("utf-8", "surrogatepass") if isinstance(v, str) else bytes(v or b"")


@seed(SEED)
@budget.examples(400)
@given(
    original_headers(),
    st.booleans(),
    st.one_of(st.none(), st.lists(st.text(max_size=30), max_size=3)),
)
def test_dead_letter_headers_are_bounded_and_say_when_they_cut(
    headers: list[tuple[str, Any]], as_map: bool, cut: list[str] | None
) -> None:
    check_dead_letter(dict(headers) if as_map else headers, cut)


def check_dead_letter(original: list[tuple[str, Any]] | dict[str, Any], cut: list[str] | None
                      ) -> None:  # fmt: skip
    """dead_letter_headers' contract: at most DLQ_HEADERS_MAX + 2 KiB of headers (UTF-8 names
    and values, as Kafka counts them), why and where, and `evi-dlq-cut` exactly when an original
    header is not carried as it was."""
    out = dead_letter_headers("corrupt-jpeg", "cannot decode JPEG: " + "x" * 2000,
                              "evi.frames.face", 3, 9912, original, cut=cut)  # fmt: skip
    assert all(isinstance(n, str) and isinstance(v, bytes) for n, v in out)
    assert header_bytes(out) <= wire.DLQ_HEADERS_MAX + 2048, header_bytes(out)
    got = dict(out)
    assert got["evi-dlq-reason"] == b"corrupt-jpeg"
    assert got["evi-dlq-origin"] == b"evi.frames.face[3]@9912"
    assert len(got["evi-dlq-error"]) <= 1024
    # The originals that a dead letter carries, in order (its own evi-dlq-* headers are ours).
    items = original.items() if isinstance(original, dict) else original
    wanted = [(n, as_bytes(v)) for n, v in items if not n.startswith("evi-dlq-")]
    kept = [(n, v) for n, v in out if not n.startswith("evi-dlq-")]
    assert [n for n, _ in out if n == "evi-dlq-cut"] in ([], ["evi-dlq-cut"])
    was_cut = kept != wanted or bool(cut)
    assert ("evi-dlq-cut" in got) == was_cut, (len(kept), len(wanted), got.get("evi-dlq-cut"))
