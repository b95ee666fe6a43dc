"""docs/asyncapi.yaml is a valid AsyncAPI 3.0 document (the official JSON schema, vendored from
@asyncapi/specs) and says what the code does: every message the gateway builds validates
against its schema there, with no field more or less; the message types, close codes, stream id
alphabet and limits are the code's. A protocol change without the document fails here."""

from __future__ import annotations

import copy
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from evi.wire import STREAM_STATUSES, Detection, FrameMeta, Result, StreamInfo, valid_stream_id
from gateway import protocol, ws
from gateway.settings import GatewaySettings

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "asyncapi.yaml"
SCHEMA = Path(__file__).parent / "schemas" / "asyncapi-3.0.0.json"
SCHEMA_SHA256 = "abe96881dbfaad495ccbb6bd8d3fb43ca18a13b9d7564849ccb66f39d5e5b20f"
SENT = {"hello", "result", "frame", "stream", "removed", "status"}


def doc() -> Any:
    return yaml.safe_load(DOC.read_text())


def official() -> jsonschema.Draft7Validator:
    raw = SCHEMA.read_bytes()
    assert hashlib.sha256(raw).hexdigest() == SCHEMA_SHA256, "not the vendored file"
    return jsonschema.Draft7Validator(json.loads(raw))


def header_validator(d: Any, message: str) -> jsonschema.Draft7Validator:
    """The message's header schema, its $refs resolved inside the document."""
    ref = d["components"]["messages"][message]["headers"]["$ref"]
    return jsonschema.Draft7Validator({"$ref": ref, "components": d["components"]})


INFO = StreamInfo(stream="cam1", source="sample", kinds=["face"], fps=25.0, width=640,
                  height=480, status="live", message="", producer="host:1", updated_ms=5)
RESULT = Result(stream="cam1", seq=7, ts_ms=1000, processed_ms=1040, kind="person",
                model="pose", infer_ms=3.25, width=640, height=480, detections=[
                    Detection("person", 0.9, 0.1, 0.2, 0.3, 0.4, keypoints=((0.1, 0.2),)),
                    Detection("face", 0.5, 0.0, 0.0, 1.0, 1.0)])


def built() -> list[tuple[dict[str, Any], bytes]]:
    """One message of each kind, built by the gateway's own functions, unpacked."""
    packed = [
        protocol.hello_message(["cam1"], [INFO], True, "c1"),
        protocol.hello_message(None, [], False, "c2"),
        protocol.pack_message(protocol.result_header(RESULT, True), b"\xff\xd8jpeg"),
        protocol.pack_message(protocol.result_header(RESULT, False)),
        protocol.pack_message(protocol.frame_header(FrameMeta("cam1", 8, 1040, 640, 480)),
                              b"\xff\xd8jpeg"),
        protocol.stream_message(INFO),
        protocol.removed_message("cam1"),
        protocol.status_message(False),
    ]
    return [protocol.unpack_message(m) for m in packed]


def test_the_document_is_valid_asyncapi_3() -> None:
    validator, d = official(), doc()
    assert d["asyncapi"] == "3.0.0"
    assert list(validator.iter_errors(d)) == []
    # The schema bites: an unknown field, a wrong action, a channel without its address form.
    for path, value in ((("info", "licence"), "MIT"),
                        (("operations", "sendOneStream", "action"), "publish"),
                        (("channels", "oneStream", "address"), 12)):
        bad = copy.deepcopy(d)
        node = bad
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        assert not validator.is_valid(bad), path


def test_every_message_the_gateway_builds_matches_its_schema() -> None:
    d = doc()
    seen = set()
    for header, jpeg in built():
        kind = header["type"]
        seen.add(kind)
        header_validator(d, kind).validate(header)
        payload = d["components"]["messages"][kind]["payload"]["$ref"].rsplit("/", 1)[1]
        assert payload == ("Picture" if "image" in header else "NoPicture"), kind
        assert bool(jpeg) == header.get("image", False), kind
    assert seen == SENT


def test_a_field_added_or_dropped_in_the_code_fails_the_schema() -> None:
    d = doc()
    header = protocol.result_header(RESULT, True)
    with pytest.raises(jsonschema.ValidationError, match="additional"):
        header_validator(d, "result").validate({**header, "new_field": 1})
    del header["infer_ms"]
    with pytest.raises(jsonschema.ValidationError, match="infer_ms"):
        header_validator(d, "result").validate(header)


def test_message_types_are_those_in_the_code() -> None:
    d = doc()
    code = set(re.findall(r'"type":\s*"(\w+)"', (REPO / "gateway" / "protocol.py").read_text()))
    assert code == SENT
    headers = {m: d["components"]["messages"][m]["headers"]["$ref"].rsplit("/", 1)[1]
               for m in SENT}
    consts = {d["components"]["schemas"][h]["properties"]["type"]["const"]
              for h in headers.values()}
    assert consts == SENT
    for channel in d["channels"].values():
        assert set(channel["messages"]) == SENT | {"clientMessage"}
    sent = {op["channel"]["$ref"]: {m["$ref"].rsplit("/", 1)[1] for m in op["messages"]}
            for op in d["operations"].values() if op["action"] == "send"}
    assert sent == {"#/channels/oneStream": SENT, "#/channels/manyStreams": SENT}


def test_close_codes_limits_and_ids_are_the_codes() -> None:
    d = doc()
    codes = {n: v for n, v in vars(protocol).items() if n.startswith("CLOSE_")}
    assert d["components"]["x-close-codes"] == codes
    limits = dict(d["components"]["x-limits"])
    assert (limits.pop("max_ids"), limits.pop("max_ids_chars")) == (ws.MAX_IDS, ws.MAX_IDS_CHARS)
    fields = GatewaySettings.model_fields
    assert limits == {name: fields[name].default for name in limits}
    assert set(limits) == {"client_queue", "ws_client_max_bytes", "ws_client_rate",
                           "max_connections", "max_connections_per_client", "pair_wait_ms",
                           "frames_alone_after_ms", "frames_alone_fps"}
    query = d["channels"]["manyStreams"]["bindings"]["ws"]["query"]["properties"]["ids"]
    assert query["maxLength"] == ws.MAX_IDS_CHARS
    assert d["components"]["messages"]["clientMessage"]["payload"]["maxLength"] == (
        fields["ws_client_max_bytes"].default)
    statuses = d["components"]["schemas"]["StreamInfo"]["properties"]["status"]["enum"]
    assert tuple(statuses) == STREAM_STATUSES
    # The documented id alphabet accepts exactly what the gateway does.
    patterns = {d["components"]["schemas"]["StreamId"]["pattern"],
                d["channels"]["oneStream"]["parameters"]["stream_id"]["x-pattern"]}
    (pattern,) = patterns
    for probe in ["a", "cam1", "A-b.c_9", "9", "a" * 128, "a" * 129, "-a", ".a", "", "a b",
                  "a/b", "é", "a\n", "*", "a,b"]:
        assert bool(re.fullmatch(pattern.rstrip("$").lstrip("^"), probe)) == (
            valid_stream_id(probe)), probe
