"""Stand-ins for faust's events and the processor's sink, shared by the handler's tests and its
fuzzer (no broker)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from faust.types.tuples import ConsumerMessage


@dataclass
class FakeSink:
    sent: dict[str, list[tuple[bytes | None, bytes, Any]]] = field(default_factory=dict)

    async def send(self, topic: str, key: bytes | None, value: bytes, headers: Any = None
                   ) -> asyncio.Future[None]:  # fmt: skip
        self.sent.setdefault(topic, []).append((key, value, headers))
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut


@dataclass
class FakeEvent:
    message: ConsumerMessage
    acks: list[int]

    def ack(self) -> bool:
        self.acks.append(self.message.offset)
        return True
