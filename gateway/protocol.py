"""Websocket messages (gateway → browser): u32 big-endian header length, UTF-8 JSON header,
then the frame's JPEG bytes exactly as the producer sent them. See docs/wire-format.md."""

from __future__ import annotations

import json
import struct
from dataclasses import asdict
from typing import Any

from evi.wire import FrameMeta, Result, StreamInfo, result_doc

_HEADER_LEN = struct.Struct(">I")

# Close codes of the websocket endpoints.
CLOSE_BAD_REQUEST = 4400
CLOSE_UNAUTHORIZED = 4401


def pack_message(header: dict[str, Any], jpeg: bytes = b"") -> bytes:
    head = json.dumps(header, separators=(",", ":")).encode()
    return b"".join((_HEADER_LEN.pack(len(head)), head, jpeg))


def unpack_message(data: bytes) -> tuple[dict[str, Any], bytes]:
    (n,) = _HEADER_LEN.unpack_from(data)
    header: dict[str, Any] = json.loads(data[4 : 4 + n])
    return header, data[4 + n :]


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
