"""The autoscaler's readings on the real broker come from one consumer and one admin client for
its whole life (a new pair per poll printed a librdkafka line each few seconds)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from confluent_kafka import Producer

import evi.kafka
import evi.scaleplan
from evi.dev import Autoscaler, Children
from evi.scaleplan import ScalerConfig
from evi.settings import KafkaSettings
from evi.topics import Topics

pytestmark = pytest.mark.kafka


@dataclass
class NoChildren(Children):
    started: list[str] = field(default_factory=list)

    def start(self, name: str, *args: str, env: dict[str, str] | None = None) -> None:
        self.started.append(name)


def test_the_autoscaler_reads_every_poll_with_the_same_two_clients(
    kafka: KafkaSettings, topics: Topics, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[str] = []

    class CountedConsumer(evi.kafka.Consumer):  # type: ignore[misc]
        def __init__(self, cfg: dict[str, Any]) -> None:
            made.append("consumer")
            super().__init__(cfg)

    class CountedAdmin(evi.scaleplan.AdminClient):  # type: ignore[misc]
        def __init__(self, cfg: dict[str, Any]) -> None:
            made.append("admin")
            super().__init__(cfg)

    monkeypatch.setattr(evi.kafka, "Consumer", CountedConsumer)
    monkeypatch.setattr(evi.scaleplan, "AdminClient", CountedAdmin)
    p = Producer(kafka.client_config())
    for i in range(5):
        p.produce(topics.frames("face"), b"x", key=f"s{i}".encode())
    assert p.flush(10) == 0
    cfg = ScalerConfig(lag_threshold=2, offset_reset_policy="earliest", min_replicas=1,
                       max_replicas=2)
    children = NoChildren()
    scaler = Autoscaler(children, kafka, topics, "face", cfg, interval_s=1.0)
    try:
        lags = []
        for now in range(6):
            scaler.poll(float(now))
            assert scaler.last_plan is not None
            lags.append(scaler.last_plan.lag)
    finally:
        scaler.close()
    assert lags == [5] * 6  # real readings: 5 records, no commit, earliest
    assert made == ["consumer", "admin"]  # one of each, for six polls
    assert children.started == ["processor-face-1", "processor-face-2"]  # lag 5 / 2 -> capped 2
