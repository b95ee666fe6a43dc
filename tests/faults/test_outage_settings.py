"""`broker_outage_s` (how long a worker waits for a broker that went away) reaches both of the
worker's librdkafka producers: results and dead letters, and the in-flight records."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest

from evi.errors import ConfigError
from evi.settings import load
from evi.topics import Topics
from processors import quarantine, sink
from processors.settings import ProcessorSettings


class FakeProducer:
    configs: ClassVar[list[dict[str, Any]]] = []

    def __init__(self, config: dict[str, Any]) -> None:
        FakeProducer.configs.append(config)

    def poll(self, timeout: float) -> int:
        return 0

    def flush(self, timeout: float) -> int:
        return 0


def test_broker_outage_bound_is_each_producers_message_timeout(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert load(ProcessorSettings).broker_outage_s == 300.0
    monkeypatch.setenv("EVI_BROKER_OUTAGE_S", "90")
    s = load(ProcessorSettings, cache_dir=tmp_path)
    monkeypatch.setattr(sink, "Producer", FakeProducer)
    FakeProducer.configs = []
    results = sink.Sink(s.kafka, s.topics.max_message_bytes, s.linger_ms, s.broker_outage_s)
    flight = quarantine.Flight(s.kafka, Topics(s.topics), "g", "evi.frames.face", 1,
                               s.topics.max_message_bytes, s.broker_outage_s)
    try:
        assert [c["message.timeout.ms"] for c in FakeProducer.configs] == [90_000, 90_000]
        assert all(c["acks"] == "all" and c["enable.idempotence"] for c in FakeProducer.configs)
    finally:
        results.close(0)
        flight.close()


@pytest.mark.parametrize("value", ["5", "-1", "100000"])
def test_broker_outage_out_of_range_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("EVI_BROKER_OUTAGE_S", value)
    with pytest.raises(ConfigError, match=r"^broker_outage_s: "):
        load(ProcessorSettings)
