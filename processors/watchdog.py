"""A time budget for the frames a worker is running: a hang is a death, not a wedge.

Python cannot interrupt a thread stuck inside a codec or the model, and a worker whose frames
never finish holds its partitions (faust keeps heartbeating) while nothing moves. So a batch that
runs past its budget ends the process, with one line naming the batch: the next owner of the
partitions finds the batch in flight (processors/quarantine.py) and runs its frames one at a
time, so the frame that hangs again is quarantined.

The check runs on a thread of its own, which needs the GIL; for a hang that holds the GIL,
`faulthandler`'s C watchdog (it runs without the GIL) is armed a little later than the budget and
dumps every thread's stack before it exits.
"""

from __future__ import annotations

import faulthandler
import itertools
import logging
import os
import threading
import time

log = logging.getLogger("evi.processor")

EX_HUNG = 70  # as for any fatal error: the uncommitted frames are replayed
GRACE_S = 5.0  # faulthandler fires this much after the budget, if our thread could not


class Watchdog:
    def __init__(self, budget_s: float, tick_s: float = 0.25) -> None:
        self.budget_s = budget_s
        self._tick_s = tick_s
        self._running: dict[int, tuple[float, str]] = {}  # token -> (deadline, what)
        self._tokens = itertools.count()
        self._lock = threading.Lock()
        self._armed = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="evi-watchdog", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            self._disarm()

    def begin(self, what: str) -> int:
        """Work starts (called on the event loop: a dict insert, and an arm when idle before)."""
        token = next(self._tokens)
        with self._lock:
            self._running[token] = (time.monotonic() + self.budget_s, what)
            if not self._armed:
                faulthandler.dump_traceback_later(self.budget_s + GRACE_S, exit=True)
                self._armed = True
        return token

    def end(self, token: int) -> None:
        with self._lock:
            self._running.pop(token, None)

    def overdue(self, now: float) -> str | None:
        with self._lock:
            late = [what for deadline, what in self._running.values() if deadline < now]
        return late[0] if late else None

    def _run(self) -> None:
        while not self._stop.wait(self._tick_s):
            now = time.monotonic()
            what = self.overdue(now)
            if what is not None:
                log.critical("frame budget of %.1f s exceeded by %s: exiting, so that the next "
                             "owner runs these frames one at a time", self.budget_s, what)
                logging.shutdown()
                os._exit(EX_HUNG)
            with self._lock:  # keep faulthandler's deadline just behind the earliest of ours
                if self._running:
                    first = min(deadline for deadline, _ in self._running.values())
                    faulthandler.dump_traceback_later(max(0.1, first - now) + GRACE_S, exit=True)
                    self._armed = True
                else:
                    self._disarm()

    def _disarm(self) -> None:
        if self._armed:
            faulthandler.cancel_dump_traceback_later()
            self._armed = False
