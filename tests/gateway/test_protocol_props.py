"""Property tests of the websocket framing (gateway/protocol.py): pack/unpack round trips for
any JSON header and any bytes, and unpack of any bytes either returns or raises BadMessage."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.protocol import BadMessage, pack_message, unpack_message

RAN = {"round_trip": 0, "any_bytes": 0, "bad_length": 0}


@pytest.fixture(scope="module", autouse=True)
def report() -> Iterator[None]:
    yield
    print(f"\nprotocol property cases run: {RAN}")

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.text(max_size=40)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner,
                                                                max_size=5),
    max_leaves=20,
)
headers = st.dictionaries(st.text(max_size=20), json_values, max_size=8)


@settings(max_examples=400, deadline=None)
@given(header=headers, jpeg=st.binary(max_size=2048))
def test_pack_then_unpack_gives_back_header_and_bytes(header: dict[str, object],
                                                      jpeg: bytes) -> None:
    RAN["round_trip"] += 1
    raw = pack_message(header, jpeg)
    assert unpack_message(raw) == (header, jpeg)
    assert unpack_message(bytearray(raw)) == (header, jpeg)


@settings(max_examples=1500, deadline=None)
@given(data=st.binary(max_size=512) | st.builds(
    lambda n, body: struct.pack(">I", n) + body, st.integers(0, 2**32 - 1),
    st.binary(max_size=64)))
def test_unpack_of_any_bytes_returns_a_dict_or_raises_bad_message(data: bytes) -> None:
    RAN["any_bytes"] += 1
    try:
        header, rest = unpack_message(data)
    except BadMessage:
        return
    assert isinstance(header, dict) and isinstance(rest, bytes)
    n = int.from_bytes(data[:4], "big")
    assert json.loads(data[4 : 4 + n]) == header and rest == data[4 + n :]


@settings(max_examples=400, deadline=None)
@given(header=headers, extra=st.integers(1, 2**20), jpeg=st.binary(max_size=64))
def test_a_length_past_the_end_or_a_cut_header_is_bad(header: dict[str, object], extra: int,
                                                      jpeg: bytes) -> None:
    RAN["bad_length"] += 1
    raw = pack_message(header, jpeg)
    n = int.from_bytes(raw[:4], "big")
    longer = struct.pack(">I", n + len(jpeg) + extra) + raw[4:]
    for bad in (longer, raw[: 4 + n - 1], raw[:3], b"", "text"):
        try:
            unpack_message(bad)  # type: ignore[arg-type]
        except BadMessage:
            continue
        raise AssertionError(f"{bad[:40]!r} was accepted")
