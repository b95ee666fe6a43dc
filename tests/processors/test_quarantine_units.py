"""What an in-flight record left by a dead worker means for the next owner, and the frame
budget's watchdog (no broker: processors/quarantine.py, processors/watchdog.py)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest

from evi.wire import BadResult, InFlight, decode_inflight, encode_inflight
from processors.quarantine import Suspect, suspect_of
from processors.watchdog import EX_HUNG, Watchdog


def test_a_range_below_the_commit_finished() -> None:
    assert suspect_of(InFlight(10, 20), 21, 1) == (None, False)


def test_an_uncommitted_range_is_run_alone_from_the_commit_on() -> None:
    assert suspect_of(InFlight(10, 20), 15, 1) == (Suspect(15, 20, 0), False)
    assert suspect_of(InFlight(10, 20), None, 1) == (Suspect(10, 20, 0), False)


def test_a_frame_that_killed_a_worker_running_it_alone_is_quarantined() -> None:
    alone = InFlight(17, 17, alone=True, deaths=0)
    assert suspect_of(alone, 17, 1) == (Suspect(17, 17, 1), True)
    assert suspect_of(alone, 17, 2) == (Suspect(17, 17, 1), False)  # one more try alone
    assert suspect_of(InFlight(17, 17, alone=True, deaths=1), 17, 2) == (Suspect(17, 17, 2), True)


def test_a_frame_that_finished_alone_is_not_blamed() -> None:
    finished = InFlight(17, 17, alone=True, running=False)
    assert suspect_of(finished, 17, 1) == (None, False)


def test_no_record_no_suspicion() -> None:
    assert suspect_of(None, 5, 1) == (None, False)


def test_inflight_records_round_trip_and_bad_ones_are_refused() -> None:
    rec = InFlight(3, 9, alone=True, deaths=2, worker="host-1", ts_ms=1, running=False)
    assert decode_inflight(encode_inflight(rec)) == rec
    for bad in (b"", b"[]", b'{"first": 5, "last": 4}', b'{"first": -1, "last": 4}',
                b'{"first": 1, "last": 4, "alone": "yes"}', b'{"first": 1e400, "last": 4}'):
        with pytest.raises(BadResult):
            decode_inflight(bad)


def test_work_within_its_budget_passes() -> None:
    dog = Watchdog(5.0, tick_s=0.05)
    token = dog.begin("stream=a seq=1")
    assert dog.overdue(time.monotonic()) is None
    dog.end(token)
    assert dog.overdue(time.monotonic() + 10) is None
    dog.stop()


def test_work_past_its_budget_ends_the_process_with_one_line() -> None:
    code = textwrap.dedent("""
        import logging, time
        from processors.watchdog import Watchdog
        logging.basicConfig(level=logging.INFO)
        dog = Watchdog(0.3, tick_s=0.05)
        dog.start()
        dog.begin("stream=cam1 seq=7 tp=frames[0] offset=7")
        time.sleep(30)
    """)
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == EX_HUNG
    assert time.monotonic() - t0 < 20
    lines = [ln for ln in out.stderr.splitlines() if "budget" in ln]
    assert len(lines) == 1 and "stream=cam1 seq=7" in lines[0], out.stderr


def test_a_hang_holding_the_gil_is_ended_by_faulthandler() -> None:
    # A C call that never releases the GIL: our thread cannot run, faulthandler's C thread can.
    code = textwrap.dedent("""
        import re
        from processors.watchdog import Watchdog
        dog = Watchdog(0.2, tick_s=10)
        dog.start()
        dog.begin("stream=cam1 seq=8")
        re.match(r"(a+)+$", "a" * 40 + "b")  # catastrophic backtracking, in C, GIL held
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "Timeout" in out.stderr and "Thread" in out.stderr  # faulthandler's stack dump
