"""The load schedule of `evi dev --autoscale --demo`: sample streams join, raise their rate and
leave, so the autoscaler has something to scale out for and, later, to scale back in for.

Plain code, no clock and no Kafka: `Schedule.fps(stream, t)` says how fast sample stream number
`stream` (1-based) sends at `t` seconds into the schedule; 0 means the stream is not there. The
producer process asks it before each frame (producers/capture.py), so one process follows the
whole schedule and nothing has to send it commands. `pace` > 1 plays the same schedule faster
(the real-broker test plays it at 3x).

The default steps are sized to a 2-core machine running the broker, one producer and up to two
face workers of one core each (`--pin-cores`): a worker keeps up with the calm and join steps and
falls behind in the peak; after the peak the lag drains and the HPA's scale-down window brings
the workers back to one (docs/scaling.md, "The demo schedule").
"""

from __future__ import annotations

from dataclasses import dataclass

from evi.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Step:
    at_s: float  # seconds into the schedule (at pace 1)
    streams: int  # streams 1..streams send
    fps: float  # each at this rate


@dataclass(frozen=True)
class Schedule:
    steps: tuple[Step, ...]
    period_s: float  # the schedule repeats after this many seconds (at pace 1)
    pace: float = 1.0

    def __post_init__(self) -> None:
        problems = []
        if not self.steps or self.steps[0].at_s != 0:
            problems.append("the first step must start at 0 s")
        if any(b.at_s <= a.at_s for a, b in zip(self.steps, self.steps[1:], strict=False)):
            problems.append("steps must be in time order")
        if self.steps and self.steps[-1].at_s >= self.period_s:
            problems.append("every step must start before the period ends")
        if any(s.streams < 0 or s.fps < 0 for s in self.steps):
            problems.append("streams and fps must be zero or more")
        if not 0.1 <= self.pace <= 100:
            problems.append("pace must be between 0.1 and 100")
        if problems:
            raise ConfigError("load schedule: " + "; ".join(problems))

    @property
    def max_streams(self) -> int:
        """How many streams the producer must have: the most any step uses."""
        return max(s.streams for s in self.steps)

    def step_at(self, t: float) -> Step:
        """The step in force `t` seconds (wall time, at this pace) after the schedule started."""
        at = (max(t, 0.0) * self.pace) % self.period_s
        current = self.steps[0]
        for s in self.steps:
            if s.at_s > at:
                break
            current = s
        return current

    def fps(self, stream: int, t: float) -> float:
        """Frame rate of stream number `stream` (1-based) at `t`; 0 = the stream has left."""
        s = self.step_at(t)
        return s.fps if stream <= s.streams else 0.0

    def offered_fps(self, t: float) -> float:
        s = self.step_at(t)
        return s.streams * s.fps

    def describe(self) -> str:
        """One line: each step at wall time (this pace), e.g. `0 s: 2 x 5 fps, 30 s: ...`."""
        steps = ", ".join(f"{s.at_s / self.pace:g} s: {s.streams} x {s.fps:g} fps"
                          for s in self.steps)
        return f"{steps}; repeats every {self.period_s / self.pace:g} s"

    def changes(self) -> list[float]:
        """Wall-time seconds of each step's start within one period, at this pace."""
        return [s.at_s / self.pace for s in self.steps]


# calm (one worker idles) -> streams join (one worker keeps up) -> peak (it falls behind: 2) ->
# streams leave (the lag drains, the scale-down window passes: 1) -> repeat.
DEMO = Schedule(
    steps=(
        Step(0, 2, 5.0),
        Step(30, 6, 8.0),
        Step(60, 12, 15.0),
        Step(130, 2, 5.0),
    ),
    period_s=240.0,
)


def demo_schedule(pace: float = 1.0) -> Schedule:
    return Schedule(DEMO.steps, DEMO.period_s, pace)
