"""Serve a gateway app in this process (uvicorn on a thread, a free 127.0.0.1 port), so a test
can look at the real HTTP and websocket behaviour and still build the app with its settings."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import httpx
import uvicorn
from fastapi import FastAPI

from tests.helpers import free_port, wait_until


@contextlib.contextmanager
def serve(app: FastAPI, headers: dict[str, str] | None = None) -> Iterator[httpx.Client]:
    """The app on a free port, and a client sending `headers` (e.g. the bearer token)."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           access_log=False, lifespan="on",
                                           ws_per_message_deflate=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, 20, "uvicorn started")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10,
                          headers=headers) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(20)


def ws_url(client: httpx.Client, path: str) -> str:
    return str(client.base_url).replace("http://", "ws://").rstrip("/") + path
