"""The optional `keypoints` of a detection (docs/wire-format.md): round trip and refusals."""

from __future__ import annotations

import json

import pytest

from evi.wire import BadResult, Detection, Result, decode_result, encode_result


def _doc(points: object) -> bytes:
    r = Result("cam1", 1, 1, 2, "person", "pose", [Detection("person", 0.8, 0.1, 0.1, 0.5, 0.9)])
    doc = json.loads(encode_result(r))
    doc["detections"][0]["keypoints"] = points
    return json.dumps(doc).encode()


def test_keypoints_round_trip_and_are_omitted_when_empty() -> None:
    pts = ((0.3, 0.8), (0.31, 0.2), (0.3, 0.35), (0.32, 0.1))
    dets = [Detection("person", 0.8, 0.1, 0.1, 0.5, 0.9, pts), Detection("person", 0.7, 0, 0, 1, 1)]
    r = Result("cam1", 1, 1, 2, "person", "pose", dets)
    raw = encode_result(r)
    assert b'"keypoints"' in raw and raw.count(b'"keypoints"') == 1
    assert [d.keypoints for d in decode_result(raw).detections] == [pts, ()]


@pytest.mark.parametrize("points", [
    [[0.1]], [[0.1, 0.2, 0.3]], "0.1,0.2", [["0.1", 0.2]], [[0.1, 0.2]] * 65, [[True, 0.2]],
])
def test_bad_keypoints_are_a_bad_result(points: object) -> None:
    with pytest.raises(BadResult):
        decode_result(_doc(points))
