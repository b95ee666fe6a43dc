"""Video sources and the one function that picks one from a --source string."""

from __future__ import annotations

import os
import re
from pathlib import Path

from producers.sources.base import Frame, Source, SourceError
from producers.sources.camera import CameraSource, is_camera
from producers.sources.file import FileSource
from producers.sources.images import ImagesSource, is_images
from producers.sources.sample import SampleSource
from producers.sources.url import UrlSource, is_url

__all__ = ["Frame", "Source", "SourceError", "default_stream_id", "make_source", "missing_file"]

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def make_source(
    spec: str,
    start: float = 0.0,
    duration: float | None = None,
    width: int | None = None,
    height: int | None = None,
    open_timeout_s: float = 5.0,
) -> Source:
    """The source a --source string names: `sample:`, a URL, a camera, images or a file."""
    if spec.startswith("sample:"):
        return SampleSource(spec)
    if is_url(spec):
        return UrlSource(spec, open_timeout_s, open_timeout_s)
    if is_camera(spec):
        return CameraSource(spec, width, height)
    if is_images(spec):
        return ImagesSource(spec)
    return FileSource(spec, start, duration)


def missing_file(spec: str) -> str | None:
    """What is wrong with a --source naming a local video file that cannot be read; None for
    a readable file and for the other kinds of source (opened, and retried, when they start)."""
    if spec.startswith("sample:") or is_url(spec) or is_camera(spec) or is_images(spec):
        return None
    return file_problem(Path(spec).expanduser(), "video file", spec)


def file_problem(path: Path, what: str, shown: str) -> str | None:
    """Why `path` (a `what`, shown to the user as `shown`) cannot be read; None when it can."""
    if not path.exists():
        return f"no such {what}: {shown}"
    if not path.is_file():
        return f"{shown} is not a {what}"
    if not os.access(path, os.R_OK):
        return f"cannot read {what} {shown}: permission denied"
    return None


def default_stream_id(spec: str) -> str:
    """A valid stream id from the source's name: `videos/lobby.mp4` -> `lobby`."""
    try:
        name = make_source(spec).name
    except SourceError:
        name = spec
    clean = _UNSAFE.sub("-", name).strip("-._")[:128]
    return clean or "stream"
