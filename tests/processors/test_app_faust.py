"""The upstream faust facts our settings rest on, checked against the installed faust (no broker).
If an upgrade changes one, this fails and docs/processors.md needs another look."""

from __future__ import annotations

import inspect
from collections import defaultdict
from types import SimpleNamespace
from typing import Any

import faust
from faust.streams import Stream
from faust.transport.consumer import Consumer
from faust.types import TP
from intervaltree import IntervalTree
from mode.supervisors import OneForOneSupervisor

from processors.app import faust_config
from processors.settings import ProcessorSettings

TP0 = TP("frames", 0)


def test_faust_defaults_we_override() -> None:
    c = faust.App("defaults", broker="kafka://127.0.0.1:9092").conf
    assert c.broker_commit_interval == 2.8
    assert c.broker_session_timeout == 60.0 and c.broker_heartbeat_interval == 3.0
    assert c.broker_max_poll_interval == 1000.0
    assert c.stream_buffer_maxsize == 4096
    assert c.consumer_max_fetch_size == 1024**2 and c.producer_max_request_size == 1_000_000
    assert c.consumer_auto_offset_reset == "earliest"  # already right; we pin it anyway
    assert c.agent_supervisor is OneForOneSupervisor  # type: ignore[comparison-overlap]  # restarts a crashed agent, keeps going
    overridden = set(faust_config(ProcessorSettings(), "g"))
    assert {"broker_commit_interval", "broker_session_timeout", "broker_heartbeat_interval",
            "broker_max_poll_interval", "stream_buffer_maxsize", "consumer_max_fetch_size",
            "producer_max_request_size", "consumer_auto_offset_reset"} <= overridden


def new_offset(committed: int | None, acked: list[int]) -> int | None:
    """faust's own `Consumer._new_offset` (the offset it would commit) on a stand-in consumer."""
    fake: Any = SimpleNamespace(
        _acked=defaultdict(list, {TP0: list(acked)}),
        _acked_index=defaultdict(set, {TP0: set(acked)}),
        _gap=defaultdict(IntervalTree),
        _committed_offset=defaultdict(lambda: None, {TP0: committed}),
    )
    result: int | None = Consumer._new_offset(fake, TP0)
    return result


def test_606_the_gap_check_commits_past_an_event_still_in_flight() -> None:
    # Committed 10 = offset 10 is next. With 10 in flight and 11, 12 acked (another actor
    # finished first), faust returns 13: committing it would skip 10 if the worker died now.
    assert new_offset(10, [11, 12]) == 13
    # Its check only catches a gap of two or more (`min(acked) - committed > 1`).
    assert new_offset(10, [12, 13]) is None
    # With no commit yet there is no check at all: 0 in flight, 1 and 2 acked → 3.
    assert new_offset(None, [1, 2]) == 3
    # In-order acks, what concurrency 1 and our Acker guarantee, are committed exactly.
    assert new_offset(10, [10, 11]) == 12


def test_take_events_acks_its_batch_in_a_finally() -> None:
    """So a batch whose body raised, or was cancelled, is acked (and then committed) too, when
    the generator is closed: why processors/handler.py pins every event of a batch."""
    src = inspect.getsource(Stream.take_events)
    body = src[src.index("yield list(events)"):]
    assert body.index("finally:") < body.index("await self.ack(event)")


def test_agent_errors_commit_by_default() -> None:
    """faust's agent error hook commits the acked offsets (faust/app/base.py)."""
    src = inspect.getsource(faust.App._on_agent_error)
    assert "on_task_error" in src
    assert "await self.commit()" in inspect.getsource(Consumer.on_task_error)


def test_a_full_stream_buffer_stops_fetching_for_a_second() -> None:
    """When the stream buffer is under pressure faust takes the partition out of the fetch set;
    with none left its fetch loop sleeps a full second. A buffer of tens of frames therefore
    caps a worker well below its speed: why `prefetch` holds more than a second of frames."""
    src = inspect.getsource(Consumer._wait_next_records)
    assert "await self.sleep(1)" in src
    assert "active_partitions.discard(tp)" in inspect.getsource(Consumer.on_buffer_full)


def test_records_fetched_while_stopped_are_dropped_and_only_positive_commits_sought() -> None:
    """faust drops records a fetch returns while its flow is stopped (a rebalance under way) and
    seeks back to the committed offsets to read them again; aiokafka's `seek_to_committed` seeks
    only to a commit above 0, so a partition with no commit, or a commit of 0, keeps a fetch
    position past the dropped records: why processors/seek.py commits a start and seeks 0."""
    getmany = inspect.getsource(Consumer.getmany)
    stopped = getmany[getmany.index("getmany called while flow not active"):]
    assert "await self.perform_seek()" in stopped
    assert "self.seek_to_committed()" in inspect.getsource(Consumer.perform_seek)
    from aiokafka import AIOKafkaConsumer

    assert "if offset and offset > 0:" in inspect.getsource(AIOKafkaConsumer.seek_to_committed)
