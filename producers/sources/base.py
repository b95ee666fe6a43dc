"""The one interface every video source implements: open, read frames, close."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import numpy.typing as npt

Frame = npt.NDArray[np.uint8]  # H x W x 3, BGR (OpenCV's order), C-contiguous


class SourceError(Exception):
    """A source that cannot be opened or read.

    `permanent` errors (a file that is not a video, a camera device that does not exist) are not
    retried; the others (a URL that does not answer, a camera that went away) are, with backoff.
    The message says what is wrong and how to fix it.
    """

    def __init__(self, message: str, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class Source(ABC):
    """A stream of BGR frames. Not thread-safe: one capture thread owns it.

    `live` sources (cameras, network URLs) deliver frames at their own pace and are reconnected
    when they end; the others (files, images, the sample clip) are paced by the capture loop and
    simply end (or loop).
    """

    live: bool = False

    def __init__(self, spec: str) -> None:
        self.spec = spec

    @property
    @abstractmethod
    def name(self) -> str:
        """A short human name, the default stream id (before sanitising)."""

    @property
    def native_fps(self) -> float | None:
        """Frames per second the source was recorded at, when it says so."""
        return None

    @abstractmethod
    def open(self) -> None:
        """Open (or reopen from the start); raise SourceError when it cannot."""

    @abstractmethod
    def read(self) -> Frame | None:
        """The next frame, or None when the source has ended; SourceError when it broke."""

    @abstractmethod
    def close(self) -> None:
        """Release the source; safe to call twice or before open."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec!r})"
