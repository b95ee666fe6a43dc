"""Small pure pieces: message framing, kind discovery, consumer groups of a kind, lag, stats."""

from __future__ import annotations

import re
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

import gateway.monitor as monitor_module
from evi.settings import TopicSettings
from evi.topics import Topics
from evi.wire import Detection, Result
from gateway.feed import kinds_in
from gateway.monitor import Monitor, groups_of, lag_of
from gateway.protocol import pack_message, result_header, unpack_message
from gateway.settings import GatewaySettings
from gateway.stats import percentile
from tests.gateway.feed import jpeg
from tests.gateway.wsclient import BACKOFF, backoff_delay

WEB = Path(__file__).resolve().parents[2] / "web"
T = Topics(TopicSettings(prefix="p"))


def test_message_framing_round_trip_keeps_jpeg_bytes() -> None:
    r = Result("cam1", 3, 1000, 1010, "face", "m", [Detection("face", 0.98765, 0, 0, 0.5, 0.5)])
    data = jpeg(3)
    raw = pack_message(result_header(r, True), data)
    n = int.from_bytes(raw[:4], "big")
    assert raw[4 + n :] == data
    header, body = unpack_message(raw)
    assert body == data
    assert header["detections"] == [{"label": "face", "score": 0.9877, "box": [0, 0, 0.5, 0.5]}]
    assert unpack_message(pack_message({"type": "hello"})) == ({"type": "hello"}, b"")


def test_kinds_found_from_topic_names() -> None:
    names = ["p.frames.face", "p.results.face", "p.results.person", "p.streams", "p.dlq.car",
             "q.frames.dog", "p.frames.Bad", "p-processor-face-__assignor-__leader"]
    assert kinds_in(names, T, []) == ["face", "person"]
    assert kinds_in(names, T, ["person", "cat"]) == ["person"]


def test_consumer_groups_of_a_kind() -> None:
    ids = ["p-processor-face", "p-processor-face-yolo", "p-processor-face-hd",
           "p-processor-face-hd-big", "p-processor-person", "other"]
    kinds = ["face", "face-hd", "person"]
    assert groups_of("face", kinds, ids, T) == ["p-processor-face", "p-processor-face-yolo"]
    assert groups_of("face-hd", kinds, ids, T) == ["p-processor-face-hd", "p-processor-face-hd-big"]
    assert groups_of("car", kinds, ids, T) == []


def test_lag_uses_start_when_nothing_committed() -> None:
    assert lag_of({0: 5, 1: -1001}, {0: 0, 1: 3}, {0: 9, 1: 10, 2: 4}) == {0: 4, 1: 7, 2: 4}


def test_percentile() -> None:
    assert percentile([], 0.5) == 0.0
    vals = [float(v) for v in range(1, 101)]
    assert (percentile(vals, 0.5), percentile(vals, 0.99), percentile(vals, 1.0)) == (
        50.0, 99.0, 100.0)


def test_python_client_backs_off_like_the_dashboard() -> None:
    js = (WEB / "src" / "socket.js").read_text()
    pattern = r"BACKOFF = \{ initialMs: (\d+), factor: (\d+), maxMs: (\d+), jitter: ([\d.]+) \}"
    m = re.search(pattern, js)
    assert m, "BACKOFF constant not found in web/src/socket.js"
    in_js = {"initial_ms": int(m[1]), "factor": int(m[2]), "max_ms": int(m[3]),
             "jitter": float(m[4])}
    assert in_js == BACKOFF
    assert [backoff_delay(a, lambda: 0.5) for a in range(7)] == [0.5, 1, 2, 4, 8, 10, 10]
    assert backoff_delay(0, lambda: 0.0) == 0.4 and backoff_delay(0, lambda: 1.0) == 0.6


def test_kind_rates_are_per_model(monkeypatch: pytest.MonkeyPatch) -> None:
    frames: dict[str, int] = {"face": 0}
    results: dict[str, dict[str, int]] = {"face": {"short": 0, "full": 0}}
    m = Monitor(GatewaySettings(auth_required=False), lambda: (frames, results), lambda ok: None)
    clock = iter([100.0, 102.0])
    monkeypatch.setattr(monitor_module, "time", SimpleNamespace(monotonic=lambda: next(clock),
                                                        time=time.time))
    assert m._rates() == {}
    frames["face"] = 20  # 10 frames/s in
    results["face"] = {"short": 20, "full": 16}  # 10 and 8 results/s: 9 per model
    assert m._rates() == {"face": (10.0, 9.0)}


def test_settings_reject_bad_kinds() -> None:
    with pytest.raises(ValueError, match="kind 'Face' is not valid"):
        GatewaySettings(kinds=["Face"], auth_required=False)
    s = GatewaySettings(kinds=["face", "person"], auth_required=False)
    assert s.kinds == ["face", "person"]
