"""The decode contract the fuzzers check: decode_jpeg returns RGB u8 pixels [H,W,3] or raises
BadFrame with a short reason word, nothing else, within a time and memory bound per frame."""

from __future__ import annotations

import os
import re
import resource
import time
from dataclasses import dataclass

import numpy as np

from evi.errors import BadFrame
from processors.decode import decode_jpeg

REASON = re.compile(r"\A[a-z][a-z0-9-]{0,31}\Z")
CASE_SECONDS = 2.0  # a frame taking longer is a finding ("hang")
CASE_MIB = 256  # a frame raising the process's peak RSS by more is a finding ("memory")
# The decode targets the fuzzers use, (w, h) or None for full size, and keep_aspect.
TARGETS: dict[str, tuple[tuple[int, int] | None, bool]] = {
    "128": ((128, 128), True),
    "128-stretch": ((128, 128), False),
    "224": ((224, 224), True),
    "224-stretch": ((224, 224), False),
    "300x100": ((300, 100), True),
    "full": (None, True),
}
TARGET_WEIGHTS = {"128": 10, "128-stretch": 3, "224": 2, "224-stretch": 2, "300x100": 1, "full": 2}


class Broken(AssertionError):
    """A broken contract: `kind` is exception, bad-output, bad-reason, hang or memory."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


@dataclass
class Outcome:
    label: str  # "ok" or the BadFrame's reason
    seconds: float
    peak_mib: float  # the process's peak RSS after the case


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _Rss:
    """The process's resident set now and its peak since the last reset (Linux: VmHWM, reset by
    writing 5 to /proc/self/clear_refs), so each case's own peak can be seen. Not ru_maxrss: a
    child process starts with its parent's (pytest's, hundreds of MiB) and it is never reset."""

    def __init__(self) -> None:
        self.page_mib = os.sysconf("SC_PAGE_SIZE") / 2**20
        try:
            self.statm: int | None = os.open("/proc/self/statm", os.O_RDONLY)
            self.status: int | None = os.open("/proc/self/status", os.O_RDONLY)
            self.clear: int | None = os.open("/proc/self/clear_refs", os.O_WRONLY)
        except OSError:  # not Linux: the peak is never reset, growth is seen once
            self.statm = self.status = self.clear = None

    def now_mib(self) -> float:
        if self.statm is None:
            return peak_mib()
        return int(os.pread(self.statm, 128, 0).split()[1]) * self.page_mib

    def peak_mib(self) -> float:
        if self.status is None:
            return peak_mib()
        text = os.pread(self.status, 8192, 0)
        at = text.index(b"VmHWM:")
        return int(text[at + 6 : text.index(b"kB", at)]) / 1024

    def reset_peak(self) -> None:
        if self.clear is not None:
            os.write(self.clear, b"5")


RSS = _Rss()


def check_decode(data: bytes, target: str) -> Outcome:
    """Decode `data` at one of TARGETS; Broken if the contract does not hold."""
    size, keep_aspect = TARGETS[target]
    before = RSS.now_mib()
    if RSS.peak_mib() > before + CASE_MIB / 2:  # an earlier case's peak would hide this one's
        RSS.reset_peak()
    t0 = time.perf_counter()
    try:
        image = decode_jpeg(data, size, keep_aspect=keep_aspect)
    except BadFrame as bad:
        label = bad.reason
        if not isinstance(label, str) or not REASON.match(label):
            raise Broken("bad-reason", f"BadFrame reason {label!r} is not a short word") from None
    except Exception as e:  # the finding: anything but BadFrame
        raise Broken("exception", f"{type(e).__name__}: {str(e)[:200]}") from None
    else:
        label = "ok"
        ok = (
            isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3
            and image.shape[2] == 3 and image.shape[0] >= 1 and image.shape[1] >= 1
        )  # fmt: skip
        if not ok:
            shape = getattr(image, "shape", None)
            raise Broken("bad-output", f"{type(image).__name__} {getattr(image, 'dtype', '')} "
                         f"{shape}, not RGB u8 [H,W,3]")  # fmt: skip
    seconds = time.perf_counter() - t0
    after = RSS.peak_mib()
    if seconds > CASE_SECONDS:
        raise Broken("hang", f"{seconds:.2f} s at target {target} (limit {CASE_SECONDS} s)")
    if after - before > CASE_MIB:
        raise Broken("memory", f"peak RSS grew {after - before:.0f} MiB at target {target} "
                     f"(limit {CASE_MIB} MiB)")  # fmt: skip
    return Outcome(label, seconds, after)
