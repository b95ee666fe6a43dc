"""A TCP forwarder on 127.0.0.1 that plays "the broker is back": bootstrap goes through it."""

from __future__ import annotations

import contextlib
import socket
import threading

MAX_CONNECTIONS = 200
CHUNK = 1 << 16


class Forwarder:
    def __init__(self, port: int, target: tuple[str, int]) -> None:
        self.port = port
        self.target = target
        self._sock: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._stop = threading.Event()

    def start(self) -> None:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(16)
        s.settimeout(0.2)
        self._sock = s
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        assert self._sock is not None
        for _ in range(MAX_CONNECTIONS):
            while not self._stop.is_set():
                try:
                    client, _ = self._sock.accept()
                    break
                except TimeoutError:
                    continue
                except OSError:
                    return
            else:
                return
            upstream = socket.create_connection(self.target, timeout=5)
            self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        src.settimeout(None)
        for _ in range(10_000_000):
            try:
                data = src.recv(CHUNK)
                if not data:
                    break
                dst.sendall(data)
            except OSError:
                break
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        self._stop.set()
        for s in [*self._conns, *([self._sock] if self._sock else [])]:
            with contextlib.suppress(OSError):
                s.close()
