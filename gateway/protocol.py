"""Websocket messages (gateway → browser): u32 big-endian header length, UTF-8 JSON header,
then the frame's JPEG bytes exactly as the producer sent them. See docs/wire-format.md."""

from __future__ import annotations

import json
import struct
from dataclasses import asdict
from typing import Any

from evi.wire import FrameMeta, Result, StreamInfo, result_doc

_HEADER_LEN = struct.Struct(">I")

# Close codes of the websocket endpoints (docs/gateway.md#close-codes).
CLOSE_NORMAL = 1000  # the server closes after the client asked to
CLOSE_GOING_AWAY = 1001  # the gateway is shutting down
CLOSE_POLICY = 1008  # the client sent messages faster than ws_client_rate
CLOSE_TOO_BIG = 1009  # the client sent a message over ws_client_max_bytes
CLOSE_TRY_AGAIN = 1013  # over max_connections or max_connections_per_client
CLOSE_BAD_REQUEST = 4400  # bad stream ids (the reason says which)
# Refused at the handshake (HTTP 401 / 403, never accepted), counted under these codes:
CLOSE_UNAUTHORIZED = 4401  # missing or wrong token (bearer header or session cookie)
CLOSE_FORBIDDEN_ORIGIN = 4403  # a browser page of another origin (not in allowed_origins)


class BadMessage(ValueError):
    """Bytes that are not a websocket message of this protocol."""


def pack_message(header: dict[str, Any], jpeg: bytes = b"") -> bytes:
    head = json.dumps(header, separators=(",", ":"), allow_nan=False).encode()
    return b"".join((_HEADER_LEN.pack(len(head)), head, jpeg))


def unpack_message(data: bytes | bytearray) -> tuple[dict[str, Any], bytes]:
    """(header, jpeg); BadMessage for anything else: short data, a length past the end, a
    header that is not a UTF-8 JSON object (or nests too deep, or has NaN)."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise BadMessage(f"a message is bytes, not {type(data).__name__}")
    if len(data) < _HEADER_LEN.size:
        raise BadMessage(f"{len(data)} bytes: shorter than the header length")
    (n,) = _HEADER_LEN.unpack_from(data)
    if n > len(data) - _HEADER_LEN.size:
        raise BadMessage(f"header length {n} is past the end ({len(data)} bytes)")
    try:
        header = json.loads(bytes(data[4 : 4 + n]), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise BadMessage(f"header is not JSON: {str(e)[:100]}") from None
    if not isinstance(header, dict):
        raise BadMessage("header is not a JSON object")
    return header, bytes(data[4 + n :])


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def result_header(r: Result, has_image: bool) -> dict[str, Any]:
    return {"type": "result", **result_doc(r), "image": has_image}


def frame_header(meta: FrameMeta) -> dict[str, Any]:
    """A frame sent alone: its stream has no recent results (no processor, or all behind)."""
    return {
        "type": "frame",
        "stream": meta.stream,
        "seq": meta.seq,
        "ts_ms": meta.ts_ms,
        "width": meta.width,
        "height": meta.height,
        "image": True,
    }


def stream_message(info: StreamInfo) -> bytes:
    return pack_message({"type": "stream", "info": asdict(info)})


def removed_message(stream: str) -> bytes:
    return pack_message({"type": "removed", "stream": stream})


def status_message(kafka: bool) -> bytes:
    return pack_message({"type": "status", "kafka": kafka})


def hello_message(
    streams: list[str] | None, known: list[StreamInfo], kafka: bool, client: str
) -> bytes:
    return pack_message({
        "type": "hello",
        "client": client,
        "streams": streams,
        "known": [i.stream for i in known],
        "info": [asdict(i) for i in known],
        "kafka": kafka,
    })
