"""The real gateway app and fan-out without Kafka: records come from the test, not a consumer.

`offline_gateway` serves `create_app(settings)` with uvicorn in this process (tests/gateway/
server.py), its lifespan building an `OfflineFanout`: the real Fanout whose start() skips the
Kafka feed thread and monitor, and which says Kafka answers. Tests hand it records with
`inject` (the feed thread's own entry point), so REST and websocket behaviour can be fuzzed
fast and without a broker."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from typing import ClassVar

import httpx
import pytest
from confluent_kafka import Message

import gateway.app as app_module
from gateway.app import create_app
from gateway.fanout import Fanout
from gateway.settings import GatewaySettings
from tests.gateway.server import serve


class OfflineFanout(Fanout):
    instances: ClassVar[list[OfflineFanout]] = []

    async def start(self) -> None:
        self.handover.loop = asyncio.get_running_loop()
        self.monitor.kafka_ok, self.monitor.error = True, ""
        self.assigned.set()
        OfflineFanout.instances.append(self)

    async def stop(self) -> None:
        self.handover.stopping.set()
        for sub in list(self.subscribers.all.values()):
            sub.close()

    def not_ready(self) -> str:
        return self.health.problem(thread_alive=True)

    def inject(self, batch: list[Message]) -> None:
        """From any thread but the loop's: as the feed thread hands a batch over."""
        self.health.tick()
        self.handover.from_thread(batch)

    def run(self, fn: object) -> None:
        """Run a callable on the loop and wait for it (state is only touched there)."""
        assert self.handover.loop is not None and callable(fn)
        done = threading.Event()

        def call() -> None:
            try:
                fn()
            finally:
                done.set()

        self.handover.loop.call_soon_threadsafe(call)
        assert done.wait(10)


@contextlib.contextmanager
def offline_gateway(
    monkeypatch: pytest.MonkeyPatch, s: GatewaySettings, headers: dict[str, str] | None = None
) -> Iterator[tuple[httpx.Client, OfflineFanout]]:
    monkeypatch.setattr(app_module, "Fanout", OfflineFanout)
    OfflineFanout.instances.clear()
    with serve(create_app(s), headers) as client:
        [fanout] = OfflineFanout.instances
        yield client, fanout
