"""evi/demo.py: the load schedule of `evi dev --demo`, without a clock or a broker."""

from __future__ import annotations

import pytest

from evi.demo import DEMO, Schedule, Step, demo_schedule
from evi.errors import ConfigError

S = Schedule((Step(0, 2, 5.0), Step(10, 4, 10.0), Step(20, 1, 2.0)), period_s=30.0)


def test_streams_join_raise_their_rate_and_leave_in_step_order() -> None:
    assert [S.fps(i, 0) for i in (1, 2, 3, 4)] == [5.0, 5.0, 0.0, 0.0]
    assert [S.fps(i, 9.99) for i in (1, 2, 3)] == [5.0, 5.0, 0.0]
    assert [S.fps(i, 10) for i in (1, 2, 3, 4, 5)] == [10.0, 10.0, 10.0, 10.0, 0.0]  # joined
    assert [S.fps(i, 25) for i in (1, 2, 3, 4)] == [2.0, 0.0, 0.0, 0.0]  # left
    assert [S.offered_fps(t) for t in (0, 10, 25)] == [10.0, 40.0, 2.0]


def test_the_schedule_repeats_after_its_period_and_never_runs_before_its_start() -> None:
    assert S.step_at(30) == S.steps[0] and S.step_at(41) == S.steps[1]
    assert S.step_at(-5) == S.steps[0]


def test_pace_plays_the_same_steps_faster() -> None:
    fast = Schedule(S.steps, S.period_s, pace=2.0)
    assert fast.fps(3, 5) == 10.0 and fast.fps(3, 4.9) == 0.0
    assert fast.changes() == [0.0, 5.0, 10.0]
    assert fast.describe() == "0 s: 2 x 5 fps, 5 s: 4 x 10 fps, 10 s: 1 x 2 fps; repeats every 15 s"


@pytest.mark.parametrize(("steps", "period", "pace", "says"), [
    ((Step(1, 1, 1.0),), 10.0, 1.0, "first step must start at 0"),
    ((Step(0, 1, 1.0), Step(5, 1, 1.0), Step(5, 2, 1.0)), 10.0, 1.0, "time order"),
    ((Step(0, 1, 1.0), Step(10, 1, 1.0)), 10.0, 1.0, "before the period ends"),
    ((Step(0, -1, 1.0),), 10.0, 1.0, "zero or more"),
    ((Step(0, 1, 1.0),), 10.0, 0.0, "pace"),
])
def test_a_bad_schedule_is_one_clear_error(
    steps: tuple[Step, ...], period: float, pace: float, says: str
) -> None:
    with pytest.raises(ConfigError, match=says):
        Schedule(steps, period, pace)


def test_the_demo_goes_calm_peak_calm_within_a_few_minutes() -> None:
    offered = [DEMO.offered_fps(s.at_s) for s in DEMO.steps]
    peak = offered.index(max(offered))
    assert 0 < peak < len(offered) - 1  # it rises to a peak and comes back down
    assert offered[-1] == offered[0] < max(offered) / 10  # the peak is > 10x the calm
    assert DEMO.max_streams == 12 and max(s.fps for s in DEMO.steps) <= 15  # the sample's rate
    # After the peak the calm lasts longer than the 60 s scale-down window plus draining.
    assert DEMO.period_s - DEMO.steps[-1].at_s >= 90
    assert DEMO.period_s <= 300
    assert demo_schedule(3.0).changes()[-1] == DEMO.steps[-1].at_s / 3
