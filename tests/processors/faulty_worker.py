"""`evi process` with faults injected, for tests only (never in the product's settings or hot
path): `python -m tests.processors.faulty_worker <evi process arguments>`.

- `EVI_TEST_FAULT=crash|stall` with `EVI_TEST_FAULT_AFTER=N`: once N frames are done, the agent's
  next batch raises an error that is not about a frame (the worker exits 70) or never finishes
  (the agent stalls; heartbeats and the web server go on).
- A frame marked by `mark(jpeg, what)` (a JPEG comment segment, so it still decodes) does, in
  the decode thread: `abort` (os.abort, SIGABRT), `segv` (a real segmentation fault), `hang`
  (sleeps past any budget) or `raise` (a KeyError, as a codec might).
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import struct
import sys
import time
from collections.abc import Sequence
from typing import Any

MARK = b"evi-fault:"


def mark(jpeg: bytes, what: str) -> bytes:
    """`jpeg` with a COM segment after SOI naming the fault; decoders skip comments."""
    body = MARK + what.encode()
    return jpeg[:2] + b"\xff\xfe" + struct.pack(">H", len(body) + 2) + body + jpeg[2:]


def fault_of(jpeg: bytes) -> str | None:
    at = jpeg.find(MARK, 0, 64)
    if at < 0:
        return None
    end = jpeg.find(b"\xff", at)
    return jpeg[at + len(MARK) : end].decode()


def install() -> None:
    from processors.handler import FrameHandler
    from processors.pipeline import FramePipeline

    log = logging.getLogger("evi.test.fault")
    prepare = FramePipeline.prepare

    def faulty_prepare(self: FramePipeline, jpeg: bytes) -> Any:
        fault = fault_of(jpeg)
        if fault is not None:
            log.warning("fault injection: %s", fault)
        if fault == "abort":
            os.abort()
        if fault == "segv":
            ctypes.string_at(0)  # a read of address 0: SIGSEGV, as a codec's bug would
        if fault == "hang":
            time.sleep(3600)
        if fault == "raise":
            raise KeyError(6)
        return prepare(self, jpeg)

    FramePipeline.prepare = faulty_prepare  # type: ignore[method-assign]

    kind = os.environ.get("EVI_TEST_FAULT", "")
    after = int(os.environ.get("EVI_TEST_FAULT_AFTER", "0"))
    if kind not in ("crash", "stall"):
        return
    start = FrameHandler.start

    async def faulty_start(self: FrameHandler, events: Sequence[Any]) -> Any:
        if self.inferred + self.dropped >= after:
            if kind == "stall":
                log.warning("fault injection: agent stalled after %d frames", self.inferred)
                await asyncio.Event().wait()
            raise RuntimeError(f"fault injection: crash after {self.inferred} frames")
        return await start(self, events)

    FrameHandler.start = faulty_start  # type: ignore[method-assign]


if __name__ == "__main__":
    install()
    from processors.__main__ import main

    sys.exit(main(sys.argv[1:]))
