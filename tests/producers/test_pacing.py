from __future__ import annotations

import random

from producers.pacing import Backoff, Clock, RateGate


def test_rate_gate_keeps_every_third_frame_of_30fps_at_10fps() -> None:
    gate = RateGate(10)
    kept = [i for i in range(90) if gate.admit(i / 30)]
    assert kept == list(range(0, 90, 3))


def test_rate_gate_with_jittery_arrivals_keeps_the_target_rate() -> None:
    rng = random.Random(7)
    gate = RateGate(5)
    times = sorted(i / 25 + rng.uniform(-0.004, 0.004) for i in range(250))  # 10 s at 25 fps
    kept = sum(gate.admit(t) for t in times)
    assert 48 <= kept <= 51


def test_rate_gate_zero_admits_everything_and_never_bursts_after_a_gap() -> None:
    assert all(RateGate(0).admit(t) for t in (0.0, 0.0, 0.0))
    gate = RateGate(10)
    assert gate.admit(0.0)
    assert gate.admit(5.0)  # a 5 s gap, then frames at 100 fps
    assert [gate.admit(5.0 + i / 100) for i in range(1, 8)].count(True) == 0
    assert gate.admit(5.1)


def test_clock_paces_at_native_rate_and_slips_instead_of_bursting() -> None:
    c = Clock(10, now=100.0)
    assert c.delay(100.0) == 0.0
    assert c.tick() == 0.0
    assert abs(c.delay(100.03) - 0.07) < 1e-9
    c.tick()
    assert c.delay(105.0) == 0.0  # 4.9 s behind: origin moves, no burst
    c.tick()
    assert abs(c.delay(105.0) - 0.1) < 1e-9
    assert Clock(0, now=0.0).delay(0.0) == 0.0


def test_clock_anchors_at_the_first_frame_not_at_open() -> None:
    c = Clock(10, now=100.0)
    c.anchor(100.8)  # the first frame took 0.8 s to arrive
    c.tick()
    assert abs(c.delay(100.81) - 0.09) < 1e-9  # frame 1 is due 0.1 s after frame 0, no burst
    c.anchor(200.0)  # only before the first tick
    assert abs(c.delay(100.81) - 0.09) < 1e-9


def test_backoff_grows_caps_and_jitters() -> None:
    b = Backoff(0.5, 8.0, random.Random(1))
    delays = [b.next_delay() for _ in range(10)]
    for k, d in enumerate(delays):
        raw = min(8.0, 0.5 * 2**k)
        assert raw * 0.5 <= d <= raw
    assert max(delays) <= 8.0
    assert len(set(delays)) == 10
    b.reset()
    assert b.next_delay() <= 0.5
