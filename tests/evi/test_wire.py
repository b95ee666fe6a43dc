"""Wire format: round trips and every way a record can be wrong."""

from __future__ import annotations

import json

import pytest

from evi.errors import BadFrame
from evi.wire import (
    FRAME_HEADERS,
    BadResult,
    Detection,
    FrameMeta,
    Result,
    StreamInfo,
    dead_letter_headers,
    decode_result,
    decode_stream_info,
    encode_result,
    encode_stream_info,
    frame_headers,
    parse_frame,
)

JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 100 + b"\xff\xd9"
META = FrameMeta(stream="cam-1", seq=812, ts_ms=1_764_070_000_123, width=640, height=480,
                 producer="host-42")


def headers_without(name: str) -> list[tuple[str, bytes]]:
    return [(k, v) for k, v in frame_headers(META) if k != name]


def test_frame_round_trip_keeps_every_field() -> None:
    headers = frame_headers(META)
    assert [k for k, _ in headers] == list(FRAME_HEADERS)
    assert parse_frame(b"cam-1", JPEG, headers) == META


def test_headers_are_readable_text() -> None:
    h = dict(frame_headers(META))
    assert h["evi-seq"] == b"812" and h["evi-ts"] == b"1764070000123"


def test_headers_may_come_as_mapping_or_str() -> None:
    as_map = {k: v.decode() for k, v in frame_headers(META)}
    assert parse_frame(None, JPEG, as_map) == META


@pytest.mark.parametrize("name", (*FRAME_HEADERS[:5], "evi-schema"))
def test_missing_header_names_it(name: str) -> None:
    with pytest.raises(BadFrame) as e:
        parse_frame(b"cam-1", JPEG, headers_without(name))
    assert e.value.reason in {"missing-header", "bad-header"}
    assert name in str(e.value) or "stream" in str(e.value)


@pytest.mark.parametrize(
    ("value", "headers", "reason"),
    [
        (JPEG, [*headers_without("evi-schema"), ("evi-schema", b"2")], "bad-schema"),
        (JPEG, [*headers_without("evi-seq"), ("evi-seq", b"x1")], "bad-header"),
        (JPEG, [*headers_without("content-type"), ("content-type", b"image/png")],
         "bad-content-type"),
        (b"", frame_headers(META), "empty"),
        (None, frame_headers(META), "empty"),
        (b"\x89PNG\r\n", frame_headers(META), "not-jpeg"),
        (JPEG, [*headers_without("evi-width"), ("evi-width", b"0")], "bad-header"),
        (JPEG, [*headers_without("evi-stream"), ("evi-stream", b"bad id!")], "bad-header"),
    ],
)
def test_bad_frames_have_a_reason(value: bytes | None, headers: list[tuple[str, bytes]],
                                  reason: str) -> None:
    with pytest.raises(BadFrame) as e:
        parse_frame(None, value, headers)
    assert e.value.reason == reason


def test_key_must_match_stream() -> None:
    with pytest.raises(BadFrame) as e:
        parse_frame(b"other", JPEG, frame_headers(META))
    assert e.value.reason == "bad-key"


def test_oversized_frame() -> None:
    with pytest.raises(BadFrame) as e:
        parse_frame(b"cam-1", JPEG, frame_headers(META), max_bytes=50)
    assert e.value.reason == "too-large" and "50" in str(e.value)


def test_result_round_trip() -> None:
    r = Result(stream="cam-1", seq=7, ts_ms=1000, processed_ms=1040, kind="face",
               model="blazeface-short", detections=[Detection("face", 0.97, 0.1, 0.2, 0.3, 0.4)],
               infer_ms=1.25, width=640, height=480)
    doc = json.loads(encode_result(r))
    assert doc["detections"] == [{"label": "face", "score": 0.97, "box": [0.1, 0.2, 0.3, 0.4]}]
    assert decode_result(encode_result(r)) == r


@pytest.mark.parametrize(
    "value",
    [b"not json", b"[1,2]", b'{"schema":2}', b'{"schema":1,"stream":"a"}',
     b'{"schema":1,"stream":"a","seq":1,"ts_ms":1,"processed_ms":1,"kind":"f","model":"m",'
     b'"detections":[{"label":"x","score":1,"box":[1,2]}]}'],
)
def test_bad_results_are_rejected(value: bytes) -> None:
    with pytest.raises(BadResult):
        decode_result(value)


def test_keypoints_round_trip_and_are_omitted_when_empty() -> None:
    pose = Detection("person", 0.8, 0.0, 0.0, 1.0, 1.0,
                     ((0.301495, 1.066391), (0.46, 0.04), (0.41, 0.48), (0.52, -0.27)))  # fmt: skip
    r = Result(stream="cam-1", seq=7, ts_ms=1000, processed_ms=1040, kind="person",
               model="mediapipe-pose", detections=[pose, Detection("person", 0.6, 0, 0, 1, 1)])
    doc = json.loads(encode_result(r))
    # Rounded like the box; outside 0..1 when the point is outside the frame (a hip below it).
    assert doc["detections"][0]["keypoints"] == [
        [0.3015, 1.06639], [0.46, 0.04], [0.41, 0.48], [0.52, -0.27]
    ]  # fmt: skip
    assert "keypoints" not in doc["detections"][1]
    back = decode_result(encode_result(r))
    assert back.detections[0].keypoints == ((0.3015, 1.06639), (0.46, 0.04), (0.41, 0.48),
                                            (0.52, -0.27))  # fmt: skip
    assert back.detections[1].keypoints == ()


def test_the_gateways_result_header_passes_keypoints_through() -> None:
    from gateway.protocol import pack_message, result_header, unpack_message

    pose = Detection("person", 0.8, 0.0, 0.0, 1.0, 1.0, ((0.5, 1.25), (0.5, 0.0)))
    r = Result(stream="cam-1", seq=7, ts_ms=1000, processed_ms=1040, kind="person",
               model="mediapipe-pose", detections=[pose])  # fmt: skip
    header, _ = unpack_message(pack_message(result_header(r, has_image=False)))
    assert header["detections"][0]["keypoints"] == [[0.5, 1.25], [0.5, 0.0]]


def _with_keypoints(keypoints: object) -> bytes:
    doc = {"schema": 1, "stream": "a", "seq": 1, "ts_ms": 1, "processed_ms": 1, "kind": "person",
           "model": "m", "detections": [{"label": "p", "score": 1, "box": [0, 0, 1, 1],
                                         "keypoints": keypoints}]}  # fmt: skip
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    ("keypoints", "why"),
    [
        ({"x": 1}, "not a list"),
        ([[0.5, 0.5]] * 65, "at most 64"),
        ([[0.5]], "2 numbers"),
        ([[0.5, 0.5, 0.5]], "2 numbers"),
        ([0.5, 0.5], "2 numbers"),
        ([["0.5", 0.5]], "not a number"),
        ([[True, 0.5]], "not a number"),
        ([[0.5, 1e300]], "not in"),
        ([[0.5, None]], "not a number"),
    ],
)
def test_bad_keypoints_are_rejected(keypoints: object, why: str) -> None:
    with pytest.raises(BadResult, match=why):
        decode_result(_with_keypoints(keypoints))


def test_keypoints_that_are_not_finite_are_rejected() -> None:
    raw = _with_keypoints([[0.5, 0.5]]).replace(b"[[0.5, 0.5]]", b"[[NaN, 0.5]]")
    with pytest.raises(BadResult, match="not JSON"):
        decode_result(raw)
    assert len(decode_result(_with_keypoints([[0.5, 0.5]] * 64)).detections[0].keypoints) == 64


def test_stream_info_round_trip() -> None:
    info = StreamInfo("cam-1", "rtsp://127.0.0.1/x", ["face", "person"], 15.0, 640, 480, "live")
    assert decode_stream_info(encode_stream_info(info)) == info


def test_dead_letter_headers_keep_origin_and_reason() -> None:
    h = dict(dead_letter_headers("not-jpeg", "no SOI", "evi.frames.face", 3, 9912,
                                 frame_headers(META)))
    assert h["evi-dlq-reason"] == b"not-jpeg"
    assert h["evi-dlq-origin"] == b"evi.frames.face[3]@9912"
    assert h["evi-seq"] == b"812"
