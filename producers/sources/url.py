"""A network stream OpenCV/FFmpeg can open: RTSP, HTTP(S) MJPEG, HLS (.m3u8), RTMP."""

from __future__ import annotations

from urllib.parse import urlsplit

import cv2

from producers.sources.base import SourceError
from producers.sources.capture import CaptureSource

SCHEMES = ("rtsp", "rtsps", "http", "https", "rtmp", "udp", "tcp", "srt")


def is_url(spec: str) -> bool:
    return "://" in spec and spec.split("://", 1)[0].lower() in SCHEMES


def redact(url: str) -> str:
    """The URL without user:password, for logs and the registry."""
    parts = urlsplit(url)
    if parts.password is None and parts.username is None:
        return url
    host = parts.hostname or ""
    netloc = f"***@{host}" + (f":{parts.port}" if parts.port else "")
    return parts._replace(netloc=netloc).geturl()


class UrlSource(CaptureSource):
    live = True

    def __init__(self, spec: str, open_timeout_s: float = 5.0, read_timeout_s: float = 5.0) -> None:
        super().__init__(spec)
        self.open_timeout_ms = int(open_timeout_s * 1000)
        self.read_timeout_ms = int(read_timeout_s * 1000)

    @property
    def name(self) -> str:
        parts = urlsplit(self.spec)
        tail = parts.path.strip("/").rsplit("/", 1)[-1].rsplit(".", 1)[0]
        host = (parts.hostname or "url").replace(".", "-")
        return f"{host}-{tail}" if tail else host

    def _capture(self) -> cv2.VideoCapture:
        params = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, self.open_timeout_ms,
            cv2.CAP_PROP_READ_TIMEOUT_MSEC, self.read_timeout_ms,
        ]
        return cv2.VideoCapture(self.spec, cv2.CAP_FFMPEG, params)

    def _open_failed(self) -> SourceError:
        return SourceError(
            f"{redact(self.spec)} did not answer with a video stream within "
            f"{self.open_timeout_ms / 1000:g}s: check the URL, the network and the camera"
        )
