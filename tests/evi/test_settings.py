"""Settings: flags > env > defaults, one clear line per error, secrets masked."""

from __future__ import annotations

import logging

import pytest

from evi.errors import ConfigError
from evi.log import LIBRDKAFKA
from evi.settings import KafkaSettings, ServiceSettings, load, override
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


@pytest.mark.parametrize("given, normal", [
    ("127.0.0.1:9092", "127.0.0.1:9092"),
    (" kafka-0.kafka.svc:9093 , kafka-1:9093 ", "kafka-0.kafka.svc:9093,kafka-1:9093"),
    ("[::1]:9092", "[::1]:9092"),
    ("broker_1:09092", "broker_1:9092"),
])
def test_bootstrap_servers_are_normalised(given: str, normal: str) -> None:
    assert KafkaSettings(bootstrap_servers=given).bootstrap_servers == normal


@pytest.mark.parametrize("given, says", [
    ("", "empty: give host:port"),
    (" , ", "empty: give host:port"),
    ("a:1,,b:2", "has an empty entry between commas"),
    ("host:notaport", "port 'notaport' is not a number 1-65535"),
    ("host:99999", "port '99999' is not a number 1-65535"),
    ("host:0", "port '0' is not a number 1-65535"),
    (":9092", "':9092' is not host:port"),
    ("broker", "'broker' is not host:port"),
    ("my broker:9092", "'my broker' is not a hostname or IPv4 address"),
    ("::1:9092", "write an IPv6 host in brackets"),
    ("[nope]:9092", "[nope] is not an IPv6 address"),
    ("PLAINTEXT://broker:9092", "write host:port (the protocol is kafka.security_protocol)"),
])
def test_bad_bootstrap_servers_are_one_config_error_naming_the_field(
    monkeypatch: pytest.MonkeyPatch, given: str, says: str
) -> None:
    monkeypatch.setenv("EVI_KAFKA__BOOTSTRAP_SERVERS", given)
    with pytest.raises(ConfigError) as e:
        load(ServiceSettings)
    assert str(e.value).startswith("kafka.bootstrap_servers: ") and says in str(e.value)
    assert "; " not in str(e.value) and "Value error" not in str(e.value)


@pytest.mark.parametrize("var, value, says", [
    ("EVI_TOPICS", "{bad", "EVI_TOPICS: not valid JSON (Expecting property name enclosed in "
                           "double quotes at character 2)"),
    ("EVI_KAFKA", "[", "EVI_KAFKA: not valid JSON (Expecting value at character 2)"),
])
def test_env_json_that_does_not_parse_is_one_config_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str, says: str
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError) as e:
        load(ServiceSettings)
    assert str(e.value) == says


def test_client_config_routes_librdkafkas_log_through_python_logging() -> None:
    cfg = KafkaSettings().client_config()
    assert cfg["logger"] is logging.getLogger(LIBRDKAFKA)
    assert cfg["bootstrap.servers"] == "127.0.0.1:9092"


def test_replication_reaches_every_topic_spec(monkeypatch: pytest.MonkeyPatch) -> None:
    default = Topics(load(ServiceSettings).topics)
    assert {(s.replication_factor, s.config["min.insync.replicas"])
            for s in [*default.specs(["face"]), default.inflight_spec("g", 4)]} == {(1, "1")}
    monkeypatch.setenv("EVI_TOPICS__REPLICATION_FACTOR", "3")
    monkeypatch.setenv("EVI_TOPICS__MIN_INSYNC_REPLICAS", "2")
    t = Topics(load(ServiceSettings).topics)
    specs = [*t.specs(["face", "person"]), t.inflight_spec(t.group("face"), 12)]
    assert len(specs) == 8
    assert {(s.replication_factor, s.config["min.insync.replicas"]) for s in specs} == {(3, "2")}
    by_name = {s.name: s for s in specs}  # the topics' own configs are kept beside it
    assert by_name["evi.inflight.evi-processor-face"].config["cleanup.policy"] == "compact"
    assert by_name["evi.frames.face"].config["max.message.bytes"] == str(4 << 20)


@pytest.mark.parametrize("rf, isr, says", [
    ("1", "2", "topics: min_insync_replicas (2) must be at most replication_factor (1)"),
    ("0", "1", "topics.replication_factor: Input should be greater than or equal to 1"),
    ("3", "0", "topics.min_insync_replicas: Input should be greater than or equal to 1"),
])
def test_bad_replication_is_one_config_error(
    monkeypatch: pytest.MonkeyPatch, rf: str, isr: str, says: str
) -> None:
    monkeypatch.setenv("EVI_TOPICS__REPLICATION_FACTOR", rf)
    monkeypatch.setenv("EVI_TOPICS__MIN_INSYNC_REPLICAS", isr)
    with pytest.raises(ConfigError) as e:
        load(ServiceSettings)
    assert str(e.value).startswith(says), str(e.value)
