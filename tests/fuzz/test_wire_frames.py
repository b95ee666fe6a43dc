"""Property tests of evi.wire.parse_frame: whatever a producer sends as key, value and headers,
the result is a FrameMeta whose every field is in range, or BadFrame, nothing else."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given, seed
from hypothesis import strategies as st

from evi import wire
from evi.errors import BadFrame
from evi.wire import FrameMeta, frame_headers, parse_frame
from tests.fuzz import budget

SEED = budget.seed()
# The safe alphabet of a stream id, matched whole (`$` alone would also take a trailing "\n").
SAFE_STREAM = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")
REASON = re.compile(r"\A[a-z][a-z0-9-]{0,31}\Z")


@pytest.fixture(autouse=True, scope="module")
def _print_seed() -> None:
    print(f"\nwire frame properties: EVI_FUZZ_SEED={SEED}")


# What a header value may be: text a producer may mean as a number, and anything else.
tricky_numbers = st.sampled_from([
    "0", "1", "-1", "-0", "+5", "1_000", " 12", "12 ", "12\n", "\n12", "0x10", "1e3", "1.0",
    "١٢٣", "１２", "²", "𝟗", "9" * 19, "9" * 20, "9" * 5000, "0" * 19 + "1", "18446744073709551616",
    str(wire.MAX_SEQ), str(wire.MAX_SEQ + 1), str(wire.MAX_TS_MS), str(wire.MAX_TS_MS + 1),
    str(wire.MAX_SIDE), str(wire.MAX_SIDE + 1), "", "image/jpeg", "image/jpeg\n", "cam1",
    "cam1\n", "cam\x00", "é",
])  # fmt: skip
numbers = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.integers(0, wire.MAX_SIDE + 2).map(str),
)
header_value: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.binary(max_size=64),
    st.text(max_size=32),
    tricky_numbers,
    tricky_numbers.map(str.encode),
    numbers,
    numbers.map(str.encode),
    st.integers(1, 200_000).map(lambda n: b"7" * n),  # huge digit strings
)
header_name = st.one_of(st.sampled_from(wire.FRAME_HEADERS), st.text(max_size=16))


def valid_headers(meta: FrameMeta) -> list[tuple[str, Any]]:
    return list(frame_headers(meta))


stream_ids = st.from_regex(SAFE_STREAM, fullmatch=True)
edge_chars = st.sampled_from(["\n", "\r", "\x00", " ", "\t", "é", "\u0660"])
valid_metas = st.builds(
    FrameMeta,
    stream=stream_ids,
    seq=st.integers(0, wire.MAX_SEQ),
    ts_ms=st.integers(0, wire.MAX_TS_MS),
    width=st.integers(1, wire.MAX_SIDE),
    height=st.integers(1, wire.MAX_SIDE),
    producer=st.text(max_size=40).filter(lambda p: len(p.encode()) <= wire.MAX_PRODUCER),
)


JPEG_ISH = b"\xff\xd8\xff\xe0 jpeg"


@st.composite
def frame_records(draw: st.DrawFn) -> tuple[Any, Any, Any, int]:
    """A record near a valid one (so parsing gets deep) with headers added, dropped, replaced."""
    meta = draw(valid_metas)
    headers = valid_headers(meta)
    for _ in range(draw(st.integers(0, 4))):
        op = draw(st.sampled_from(["replace", "drop", "add", "duplicate", "suffix", "suffix"]))
        if op == "replace" and headers:
            i = draw(st.integers(0, len(headers) - 1))
            headers[i] = (headers[i][0], draw(header_value))
        elif op == "drop" and headers:
            headers.pop(draw(st.integers(0, len(headers) - 1)))
        elif op == "add":
            headers.insert(
                draw(st.integers(0, len(headers))), (draw(header_name), draw(header_value))
            )
        elif op == "duplicate" and headers:
            headers.append(headers[draw(st.integers(0, len(headers) - 1))])
        elif op == "suffix" and headers:  # a character where a parser's `$` or strip looks
            i = draw(st.integers(0, len(headers) - 1))
            name, v = headers[i]
            raw = v.encode() if isinstance(v, str) else v or b""
            headers[i] = (name, raw + draw(edge_chars).encode())
    # Mostly a matching key and a JPEG-looking value, so the headers decide the outcome.
    stream = dict(headers).get(wire.H_STREAM)
    key: bytes | None = None
    pick = draw(st.sampled_from(["match"] * 4 + ["none", "random"]))
    if pick == "match":
        key = stream if isinstance(stream, bytes) else meta.stream.encode()
    elif pick == "random":
        key = draw(st.binary(max_size=8))
    value = draw(st.sampled_from([JPEG_ISH] * 4 + [None, b"", b"GIF89a", JPEG_ISH * 200]))
    as_map = draw(st.booleans())
    return key, value, dict(headers) if as_map else headers, draw(st.sampled_from([0, 64, 1024]))


any_records = st.tuples(
    st.one_of(st.none(), st.binary(max_size=16)),
    st.one_of(st.none(), st.binary(max_size=64)),
    st.one_of(st.none(), st.lists(st.tuples(header_name, header_value), max_size=12)),
    st.integers(0, 2**31),
)


def check(key: Any, value: Any, headers: Any, max_bytes: int) -> FrameMeta | None:
    """parse_frame's contract: FrameMeta with every field in range, or BadFrame with a reason."""
    try:
        meta = parse_frame(key, value, headers, max_bytes)
    except BadFrame as bad:
        assert REASON.match(bad.reason), bad.reason
        return None
    assert isinstance(meta, FrameMeta)
    assert wire.valid_stream_id(meta.stream) and SAFE_STREAM.match(meta.stream), meta.stream
    assert type(meta.seq) is int and 0 <= meta.seq <= wire.MAX_SEQ
    assert type(meta.ts_ms) is int and 0 <= meta.ts_ms <= wire.MAX_TS_MS
    assert type(meta.width) is int and 1 <= meta.width <= wire.MAX_SIDE
    assert type(meta.height) is int and 1 <= meta.height <= wire.MAX_SIDE
    assert meta.schema == wire.FRAME_SCHEMA and meta.content_type == wire.JPEG_CONTENT_TYPE
    assert len(meta.producer) <= wire.MAX_PRODUCER
    assert value and value.startswith(wire.JPEG_MAGIC)
    assert not max_bytes or len(value) <= max_bytes
    assert key is None or key == meta.stream.encode()
    return meta


@seed(SEED)
@budget.examples(1500)
@given(frame_records())
def test_a_near_valid_frame_parses_in_range_or_is_a_bad_frame(record: Any) -> None:
    check(*record)


@seed(SEED)
@budget.examples(800)
@given(any_records)
def test_any_record_parses_in_range_or_is_a_bad_frame(record: Any) -> None:
    check(*record)


@seed(SEED)
@budget.examples(800)
@given(valid_metas, st.booleans())
def test_frame_headers_round_trip(meta: FrameMeta, as_map: bool) -> None:
    headers = frame_headers(meta)
    value = b"\xff\xd8\xff\xe0 a jpeg"
    parsed = parse_frame(meta.stream.encode(), value, dict(headers) if as_map else headers)
    assert parsed == meta


@seed(SEED)
@budget.examples(800)
@given(st.one_of(st.text(max_size=140), st.builds(str.__add__, stream_ids, edge_chars)))
def test_valid_stream_id_is_the_safe_alphabet_whole(stream: str) -> None:
    """Stream ids go into keys, URLs, metric labels and log lines: a trailing newline is not
    part of the safe alphabet (re's `$` matches before one)."""
    assert wire.valid_stream_id(stream) == bool(SAFE_STREAM.match(stream))
