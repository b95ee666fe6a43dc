"""`evi dev --int8`: which INT8 twins it starts beside each kind's default (quantised first)."""

from __future__ import annotations

import sys

import pytest

from evi.dev import int8_twins, parse_args
from evi.errors import ConfigError

PY = [sys.executable, "-m", "evi.cli"]


def test_int8_starts_the_twin_of_the_kinds_default_only() -> None:
    assert parse_args(["--int8"]).int8 and not parse_args([]).int8
    # The built-in catalog has twins of blazeface-short (the default) and blazeface-full.
    assert int8_twins(PY, ["face"]) == [("face", "blazeface-short-int8")]


def test_a_kind_without_a_twin_is_named() -> None:
    with pytest.raises(ConfigError, match=r"--int8: no INT8 model of vehicle's default model"):
        int8_twins(PY, ["vehicle"])
