"""Settings: flags > env > defaults, one clear line per error, secrets masked."""

from __future__ import annotations

import pytest

from evi.errors import ConfigError
from evi.settings import ServiceSettings, load, override
from evi.topics import Topics


def test_env_then_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVI_KAFKA__BOOTSTRAP_SERVERS", "10.0.0.1:9092")
    monkeypatch.setenv("EVI_TOPICS__FRAME_PARTITIONS", "24")
    s = load(ServiceSettings)
    assert s.kafka.bootstrap_servers == "10.0.0.1:9092" and s.topics.frame_partitions == 24
    flagged = load(ServiceSettings, topics=override(s.topics, prefix="cams"))
    assert flagged.topics.prefix == "cams" and flagged.topics.frame_partitions == 24


def test_bad_values_name_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVI_TOPICS__FRAME_PARTITIONS", "zero")
    with pytest.raises(ConfigError) as e:
        load(ServiceSettings)
    assert "topics.frame_partitions" in str(e.value)


def test_flag_override_is_validated() -> None:
    s = load(ServiceSettings)
    with pytest.raises(ConfigError) as e:
        load(ServiceSettings, topics=override(s.topics, prefix="Bad Prefix"))
    assert "topics.prefix" in str(e.value)


def test_secrets_are_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVI_KAFKA__SASL_PASSWORD", "hunter2")
    s = load(ServiceSettings)
    assert "hunter2" not in s.printable() and "**" in s.printable()
    assert s.kafka.client_config()["sasl.password"] == "hunter2"


def test_settings_are_frozen() -> None:
    s = load(ServiceSettings)
    with pytest.raises(Exception, match="frozen"):
        s.log_level = "DEBUG"  # type: ignore[misc]


def test_topic_names() -> None:
    t = Topics(load(ServiceSettings).topics)
    assert t.frames("face") == "evi.frames.face"
    assert t.results("face") == "evi.results.face"
    assert t.dlq("face") == "evi.dlq.face"
    assert t.streams == "evi.streams"
    assert t.group("face") == "evi-processor-face"
    assert t.group("face", "int8") == "evi-processor-face-int8"
    with pytest.raises(ConfigError):
        t.frames("Face!")
    specs = {s.name: s for s in t.specs(["face"])}
    assert specs["evi.frames.face"].partitions == 12
    assert specs["evi.streams"].config["cleanup.policy"] == "compact"
