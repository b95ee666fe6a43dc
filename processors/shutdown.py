"""Stopping a worker without losing or repeating frames, and crashing it when it must.

SIGTERM (and SIGINT) start faust's own stop, which already drains the way we want, in this order
(faust/app/base.py `_stop_consumer`, then the consumer's `on_stop`): stop the flow and pause the
partitions (no more fetching), wait until every event handed to the agent is acked
(`stream_wait_empty`: the batch in flight and the one the taker is filling; ours ack only once
their results are delivered), flush the producer, commit, leave the group so the partitions move
at once. A second signal, or a stop that outlives `drain_timeout_s`, exits at once without a
commit (at-least-once still holds: whatever was not committed is replayed).

A fatal error (anything but a bad frame) closes the gate — the agent takes no further batch —,
waits for the earlier batches' deliveries, turns `stream_wait_empty` off (the failed batch stays
pinned and would be waited for forever), stops the same way and exits 70 (EX_SOFTWARE): earlier
batches are committed, the failed one is replayed by the next owner. faust's default would
instead log the crash, restart the agent and commit past the failed batch (docs/processors.md),
which is why no exception leaves our agent.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import faust

log = logging.getLogger("evi.processor")

EX_SOFTWARE = 70


class Lifecycle:
    """The gate batches pass through, and how the process is to end."""

    def __init__(self, drain_timeout_s: float) -> None:
        self.drain_timeout_s = drain_timeout_s
        self.closed = False
        self.exit_code = 0
        self._never = asyncio.Event()
        self.stop: Callable[[], None] = lambda: None  # set by the worker
        self.flushed: Callable[[], Awaitable[None]] | None = None  # the acker's join

    async def admit(self) -> None:
        """Wait here for good once the gate is closed (faust cancels the agent as it stops)."""
        if self.closed:
            await self._never.wait()

    def fatal(self, exc: BaseException, what: str) -> None:
        """Anything but a bad frame: stop taking batches, commit what was delivered, exit 70."""
        if self.exit_code:
            return
        log.critical("fatal: %s: %r; exiting so the uncommitted frames are replayed", what, exc)
        self.exit_code = EX_SOFTWARE
        self.closed = True
        self.stop()


class DrainingWorker(faust.Worker):
    """faust's Worker with a bounded stop, a forcing second signal and a fatal-error exit."""

    def __init__(self, app: faust.App, lifecycle: Lifecycle, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        # faust's start-up spinner ends with a cursor escape code even on a pipe or a log file.
        self.spinner = None
        self.lifecycle = lifecycle
        self._stopping = False
        self._fatal_task: asyncio.Future[None] | None = None
        lifecycle.stop = lambda: self._begin_stop(None)

    def _on_sigterm(self) -> None:
        self._begin_stop(signal.SIGTERM)

    def _on_sigint(self) -> None:
        self._begin_stop(signal.SIGINT)

    def _begin_stop(self, sig: signal.Signals | None) -> None:
        if self._stopping:
            if sig is not None:
                log.warning("second %s: exiting now, without a commit", sig.name)
                os._exit(self.lifecycle.exit_code or 128 + sig.value)
            return
        self._stopping = True
        # If the stop hangs (a stuck agent, a broker gone), exit anyway: nothing uncommitted is
        # lost. A thread, so that it fires even when the event loop is blocked.
        deadline = self.lifecycle.drain_timeout_s + 10.0
        timer = threading.Timer(deadline, self._give_up, args=(deadline,))
        timer.daemon = True
        timer.start()
        if sig is None:
            self._fatal_task = asyncio.ensure_future(self._fatal_stop(), loop=self.loop)
        else:
            log.info("%s: draining (up to %.0f s), committing, leaving the group", sig.name,
                     deadline)  # fmt: skip
            self._schedule_shutdown(sig)

    async def _fatal_stop(self) -> None:
        if self.lifecycle.flushed is not None:
            try:
                async with asyncio.timeout(self.lifecycle.drain_timeout_s):
                    await self.lifecycle.flushed()
            except TimeoutError:
                log.warning("earlier batches not delivered in time: they will be replayed")
        if isinstance(self.app, faust.App):
            self.app.conf.stream_wait_empty = False
        self._schedule_shutdown(signal.SIGTERM)

    def _give_up(self, after: float) -> None:
        log.error("worker did not stop within %.0f s: exiting without a commit", after)
        os._exit(self.lifecycle.exit_code or 1)
