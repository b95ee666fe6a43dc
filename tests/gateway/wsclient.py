"""Websocket clients for tests: a plain collector, and a reconnecting client with the
dashboard's backoff (web/src/socket.js), to show that a gateway restart loses no subscriber."""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.sync.client import ClientConnection, connect

from gateway.protocol import unpack_message

BACKOFF = {"initial_ms": 500, "factor": 2, "max_ms": 10000, "jitter": 0.2}


def backoff_delay(attempt: int, rnd: Callable[[], float] = random.random) -> float:
    """Seconds to wait before reconnect attempt `attempt` (0-based), as the dashboard does."""
    base = min(BACKOFF["max_ms"], BACKOFF["initial_ms"] * BACKOFF["factor"] ** attempt)
    j = BACKOFF["jitter"]
    return round(base * (1 - j + 2 * j * rnd())) / 1000


Message = tuple[dict[str, Any], bytes]


def recv_results(ws: ClientConnection, n: int, timeout: float) -> list[Message]:
    """Read until n result messages came (other types are skipped) or the time is up."""
    got: list[Message] = []
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        try:
            raw = ws.recv(timeout=max(0.05, deadline - time.monotonic()))
        except TimeoutError:
            break
        assert isinstance(raw, bytes)
        header, body = unpack_message(raw)
        if header["type"] == "result":
            got.append((header, body))
    return got


def hello(ws: ClientConnection) -> dict[str, Any]:
    raw = ws.recv(timeout=10)
    assert isinstance(raw, bytes)
    header, _ = unpack_message(raw)
    assert header["type"] == "hello", header
    return header


class ReconnectingClient:
    """Stays subscribed: on any close or failed connect it retries after backoff_delay."""

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        self.url = url
        self.headers = headers or {}
        self.results: list[dict[str, Any]] = []
        self.connects = 0
        self.closes: list[int | None] = []
        self.failed_attempts = 0
        self.kafka: list[bool] = []  # Kafka state from hello and status messages, as they came
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            try:
                ws = connect(self.url, open_timeout=3, max_size=16 << 20,
                             additional_headers=self.headers)
            except (OSError, TimeoutError, InvalidHandshake, InvalidURI):
                self.failed_attempts += 1
                self._stop.wait(backoff_delay(attempt))
                attempt += 1
                continue
            attempt = 0
            self.connects += 1
            with ws:
                try:
                    while not self._stop.is_set():
                        with contextlib.suppress(TimeoutError):
                            header, _ = unpack_message(ws.recv(timeout=0.2))  # type: ignore[arg-type]
                            if header["type"] == "result":
                                with self._lock:
                                    self.results.append(header)
                            elif header["type"] in ("hello", "status"):
                                self.kafka.append(bool(header["kafka"]))
                except ConnectionClosed as e:
                    self.closes.append(e.rcvd.code if e.rcvd else None)
            self._stop.wait(backoff_delay(attempt))
            attempt += 1

    def seqs(self, stream: str) -> list[int]:
        with self._lock:
            return [int(h["seq"]) for h in self.results if h["stream"] == stream]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
