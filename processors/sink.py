"""Results and dead letters out through librdkafka, off the event loop.

The worker's event loop is its busiest thread (faust's consumption, the pipeline's postprocess,
asyncio itself); producing through faust's aiokafka producer added record encoding, request
building and socket writes to it for every frame (about a fifth of the loop's time in
bench/processor.py's profile). `produce` here is one C call that copies the record; batching,
encoding, the network and delivery reports run on librdkafka's threads and one poller thread.

Each `send` returns a future settled by the delivery report (acks=all, idempotent, so a stream's
results stay in order). Reports arrive a produce request at a time; the poller hands each lot to
the loop in one call, not one wake-up per record. The handler's Acker acks a batch's events only
once all its futures are settled, so an offset is committed only after its frame's result is on
the broker; this does not depend on faust flushing its own producer before a commit (it does;
docs/processors.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import Sequence

from confluent_kafka import KafkaError, KafkaException, Producer

from evi.settings import KafkaSettings

HEADROOM = 64 * 1024  # record overhead and headers on top of the largest frame


class Sink:
    """`outage_s`: how long a record may wait for a broker that is away before its delivery
    fails (librdkafka's message.timeout.ms, the Java client's delivery.timeout.ms); records
    wait in librdkafka's queue meanwhile, and the worker sends no more than its batches hold."""

    def __init__(self, kafka: KafkaSettings, max_bytes: int, linger_ms: float,
                 outage_s: float) -> None:  # fmt: skip
        self._producer = Producer(kafka.client_config() | {
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": linger_ms,
            "message.timeout.ms": int(outage_s * 1000),
            "message.max.bytes": max_bytes + HEADROOM,
            "compression.type": "none",  # JSON results are small, dead letters are JPEG
            # The Java client's (and aiokafka's) key hash: a stream's results land on the
            # partition any other client would pick for them.
            "partitioner": "murmur2_random",
        })  # fmt: skip
        self._loop: asyncio.AbstractEventLoop | None = None
        # Delivery reports, appended by librdkafka callbacks on whichever thread polls.
        self._reports: deque[tuple[asyncio.Future[None], KafkaError | None]] = deque()
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="evi-sink", daemon=True)
        self._poller.start()

    async def send(
        self, topic: str, key: bytes | None, value: bytes,
        headers: Sequence[tuple[str, bytes]] | None = None, partition: int = -1,
    ) -> asyncio.Future[None]:  # fmt: skip
        """Hand a record to librdkafka (to `partition`, else by key); the returned future settles
        with its delivery."""
        loop = self._loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        reports = self._reports

        def report(err: KafkaError | None, _msg: object) -> None:  # inside poll()
            reports.append((fut, err))

        while True:
            try:
                self._producer.produce(topic, value, key, partition, on_delivery=report,
                                       headers=list(headers) if headers else None)  # fmt: skip
                return fut
            except BufferError:  # librdkafka's queue is full: the broker is behind, wait
                await asyncio.sleep(0.005)

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.1)
            self._hand_over()

    def _hand_over(self) -> None:
        """The reports collected so far, to the loop in one call."""
        lot = []
        with contextlib.suppress(IndexError):
            while True:
                lot.append(self._reports.popleft())
        if lot and self._loop is not None:
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                self._loop.call_soon_threadsafe(_settle, lot)

    def close(self, timeout: float = 10.0) -> int:
        """Deliver what is queued (bounded), stop the poller; the number left undelivered."""
        left = self._producer.flush(timeout)
        self._stop.set()
        self._poller.join(timeout=2.0)
        self._hand_over()  # reports flush() collected on this thread
        return int(left)


def _settle(lot: list[tuple[asyncio.Future[None], KafkaError | None]]) -> None:
    for fut, err in lot:
        if fut.done():
            continue
        if err is None:
            fut.set_result(None)
        else:
            fut.set_exception(KafkaException(err))
