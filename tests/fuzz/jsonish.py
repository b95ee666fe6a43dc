"""Hypothesis strategies for JSON documents as text, including what Python's json module writes
or reads that JSON does not allow (NaN, Infinity), integers of thousands of digits, deep nesting
and wrong types in known fields."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st


@dataclass(frozen=True)
class Raw:
    """A JSON token written as is: `NaN`, `1e400`, `9999…` (more digits than int() takes)."""

    text: str


def dumps(doc: Any) -> str:
    """`doc` as JSON text, Raw tokens verbatim (iterative: documents may nest deeply)."""
    out: list[str] = []
    stack: list[Any] = [doc]
    while stack:
        item = stack.pop()
        if isinstance(item, Raw):
            out.append(item.text)
        elif isinstance(item, dict):
            parts: list[Any] = [Raw("{")]
            for i, (k, v) in enumerate(item.items()):
                parts += [Raw("," if i else ""), Raw(json.dumps(str(k)) + ":"), v]
            stack.extend(reversed([*parts, Raw("}")]))
        elif isinstance(item, list):
            parts = [Raw("[")]
            for i, v in enumerate(item):
                parts += [Raw("," if i else ""), v]
            stack.extend(reversed([*parts, Raw("]")]))
        else:
            out.append(json.dumps(item))  # floats: NaN/Infinity as Python writes them
    return "".join(out)


raw_tokens = st.one_of(
    st.sampled_from(
        [
            "NaN",
            "Infinity",
            "-Infinity",
            "-0",
            "1e400",
            "-1e400",
            "1E+308",
            "0.0",
            "4.9e-324",
            "1" + "0" * 309,
            "-" + "9" * 400,
            "1" + "0" * 4299,
            "1" + "0" * 4300,
        ]
    ),
    st.integers(300, 10_000).map(lambda n: "9" * n),  # ints of hundreds to thousands of digits
).map(Raw)
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(-(2**1100), 2**1100),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=40), raw_tokens,
)  # fmt: skip
documents = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=6), st.dictionaries(st.text(max_size=12), inner, max_size=6)
    ),
    max_leaves=30,
)


def nested(depth: int, opener: str = "[") -> Raw:
    """A value nested `depth` deep, closed (valid JSON) or not, by the caller's choice."""
    closer = {"[": "]", '{"a":': "}"}[opener]
    leaf = "0"
    return Raw(opener * depth + leaf + closer * depth)


deep_values = st.one_of(
    st.integers(1, 3000).map(nested),
    st.integers(1, 3000).map(lambda n: nested(n, '{"a":')),
)
# Unclosed deep nesting: the parser gives up on recursion, not on the missing brackets.
deep_documents = st.sampled_from(
    ["[" * 100_000, '{"a":' * 100_000, "[" * 1_000_000 + "]" * 1_000_000]
)
