"""`evi dev --autoscale`'s Autoscaler without a broker: readings in, worker starts and stops out."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import pytest

import evi.dev
from evi.dev import Autoscaler, Children
from evi.scaleplan import Plan, ScalerConfig, Stabilizer
from evi.settings import KafkaSettings, TopicSettings
from evi.topics import Topics


@dataclass
class FakeChildren(Children):
    log: list[str] = field(default_factory=list)

    def start(self, name: str, *args: str) -> None:
        self.log.append(f"start {name} {' '.join(args)}")

    def retire(self, name: str) -> None:
        self.log.append(f"stop {name}")


def reading(desired: int, active: bool = True) -> Plan:
    return Plan("face", "g", "t", 0, 0, active, 0, "stable", desired, [], [])


def scaler(cfg: ScalerConfig, **kw: object) -> tuple[Autoscaler, FakeChildren]:
    children = FakeChildren()
    a = Autoscaler(children, KafkaSettings(), Topics(TopicSettings()), "face", cfg,
                   interval_s=5.0, **kw)  # type: ignore[arg-type]
    return a, children


def feed(monkeypatch: pytest.MonkeyPatch, a: Autoscaler, script: list[tuple[float, Plan]]) -> None:
    for now, plan in script:
        monkeypatch.setattr(evi.dev, "read_plan", lambda *_a, plan=plan, **_k: plan)
        a.poll(now)


def test_scales_out_at_once_and_in_after_the_window(monkeypatch: pytest.MonkeyPatch) -> None:
    a, children = scaler(ScalerConfig(min_replicas=1, max_replicas=3), pin_cores=True,
                         stabilizer=Stabilizer(up_s=0.0, down_s=30.0))
    feed(monkeypatch, a, [
        (0.0, reading(0, active=False)),  # no group yet: KEDA wakes the minimum
        (5.0, reading(3)),
        (6.0, reading(1)),  # not due: polls every 5 s
        (10.0, reading(1)), (30.0, reading(2)),  # held: 3 (at 5 s) is in the 30 s window
        (40.0, reading(1)),  # 3 has left it, 2 (at 30 s) has not: down to 2
        (65.0, reading(1)),  # only 1s left in the window: down to 1
        (75.0, reading(1)),
    ])
    assert [e[1:] for e in a.events] == [("start", 1), ("start", 2), ("start", 3),
                                         ("stop", 2), ("stop", 1)]
    assert [e[0] for e in a.events] == [0.0, 5.0, 5.0, 40.0, 65.0]
    assert children.log[1].startswith("start processor-face-2 process --kind face")
    assert "--cpu 1 --threads 1" in children.log[1]
    assert children.log[3:] == ["stop processor-face-3", "stop processor-face-2"]  # newest first
    feed(monkeypatch, a, [(80.0, reading(2))])  # a new worker takes the core left free
    assert f"--cpu {1 % os.cpu_count()} --threads 1" in children.log[-1]  # type: ignore[operator]


def test_scale_to_zero_waits_for_the_cooldown(monkeypatch: pytest.MonkeyPatch) -> None:
    a, _ = scaler(ScalerConfig(min_replicas=0, max_replicas=2), cooldown_s=60.0,
                  stabilizer=Stabilizer(up_s=0.0, down_s=0.0))
    feed(monkeypatch, a, [(0.0, reading(0, active=False))])
    assert a.workers == []  # min 0 and nothing to do: stays at zero
    feed(monkeypatch, a, [(5.0, reading(1)), (10.0, reading(0, active=False)),
                          (60.0, reading(0, active=False))])
    assert len(a.workers) == 1  # inactive since 10 s, last active at 5 s: 55 s < 60 s
    feed(monkeypatch, a, [(65.0, reading(0, active=False))])
    assert a.workers == [] and [e[1] for e in a.events] == ["start", "stop"]


def test_a_failed_reading_changes_nothing(monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    a, _ = scaler(ScalerConfig(min_replicas=1))
    feed(monkeypatch, a, [(0.0, reading(1))])

    def broken(*_a: object, **_k: object) -> Plan:
        raise KeyError("topic 'evi.frames.face' does not exist")

    monkeypatch.setattr(evi.dev, "read_plan", broken)
    assert a.poll(5.0) is None and a.workers == ["processor-face-1"]
    assert "no reading" in capsys.readouterr().out
