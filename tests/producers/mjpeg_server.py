"""A tiny HTTP MJPEG camera on 127.0.0.1 for tests: start, stop and restart it on one port."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2

from producers.sample import SampleClip
from tests.helpers import free_port

BOUNDARY = "evitestframe"
MAX_FRAMES_PER_CLIENT = 20_000
MAX_SECONDS_PER_CLIENT = 120.0


class MjpegCamera:
    def __init__(self, port: int | None = None, fps: float = 25.0, width: int = 320,
                 height: int = 240) -> None:
        self.port = port or free_port()
        self.fps = fps
        clip = SampleClip(width, height, 30)
        self.jpegs = [cv2.imencode(".jpg", clip.frame(i))[1].tobytes() for i in range(30)]
        self.frames_sent = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._down = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/stream.mjpg"

    def start(self) -> None:
        camera = self
        self._down.clear()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", f"multipart/x-mixed-replace;boundary={BOUNDARY}")
                self.send_header("Cache-Control", "no-cache")
                self.end_headers()
                t0 = time.monotonic()
                for i in range(MAX_FRAMES_PER_CLIENT):
                    if camera._down.is_set() or time.monotonic() - t0 > MAX_SECONDS_PER_CLIENT:
                        break
                    jpeg = camera.jpegs[i % len(camera.jpegs)]
                    head = (f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                            f"Content-Length: {len(jpeg)}\r\n\r\n").encode()
                    try:
                        self.wfile.write(head + jpeg + b"\r\n")
                        self.wfile.flush()
                    except OSError:
                        break
                    camera.frames_sent += 1
                    time.sleep(1.0 / camera.fps)

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        server.allow_reuse_address = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and cut the clients off, like a camera losing power."""
        self._down.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
