"""Quantising leaves the host process's logging alone: NNCF's own `set_log_level` also sets the
level of the handlers its logger holds, and after two quantisations in one pytest session the
capture handlers of every later test were at ERROR (their warnings vanished). Run as an inner
pytest session, as it happened."""

from __future__ import annotations

import pytest

from evi.settings import REPO_ROOT

pytest_plugins = ["pytester"]

QUANTIZE_TWICE = '''
import logging, shutil
from pathlib import Path
from processors.models import BlazeFaceConfig
from processors.quantize import quantize_model
from tests.fixtures.images import astronaut

CACHE = Path({cache!r})

def quantize(tmp_path):
    src = BlazeFaceConfig(name="blazeface-short", variant="short",
                          path=CACHE / "models/blazeface/face_detection_short_range.tflite")
    dst = BlazeFaceConfig(name="blazeface-short-int8", variant="short",
                          quantize_from="blazeface-short")
    assert quantize_model(dst, src, tmp_path, [astronaut()], "face").state == "made"

def test_one(tmp_path):
    quantize(tmp_path)

def test_two(tmp_path):
    quantize(tmp_path)

def test_a_later_warning_is_still_captured(caplog):
    logging.getLogger("evi.producer").warning("still heard")
    assert [r.getMessage() for r in caplog.records] == ["still heard"]
'''


def test_two_quantisations_leave_later_tests_log_capture_working(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_inner=QUANTIZE_TWICE.format(cache=str(REPO_ROOT / ".cache")))
    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT))
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider", timeout=300)
    assert result.ret == 0, "\n".join(result.outlines[-30:])
    result.assert_outcomes(passed=3)
