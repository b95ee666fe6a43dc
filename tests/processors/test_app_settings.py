"""Processor settings, CLI flags and the faust configuration built from them (no broker)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import faust
import pytest

from evi.errors import ConfigError
from evi.settings import TopicSettings, load
from evi.topics import Topics
from processors.__main__ import build_settings, choose_model, parse_args
from processors.app import faust_config, group_for
from processors.settings import ProcessorSettings, parse_cpus


def settings(*argv: str) -> ProcessorSettings:
    return build_settings(parse_args(list(argv)))


def test_concurrency_other_than_one_is_refused_with_the_reason() -> None:
    assert settings().concurrency == 1
    with pytest.raises(ConfigError) as e:
        settings("--concurrency", "2")
    assert "faust-streaming#606" in str(e.value) and "partitions" in str(e.value)


def test_cpu_lists_and_threads() -> None:
    assert parse_cpus("0") == {0}
    assert parse_cpus("0,2-3") == {0, 2, 3}
    for bad in ("", "a", "3-1", "-1"):
        with pytest.raises(ValueError):
            parse_cpus(bad)
    s = settings("--cpu", "0-1", "--threads", "2")
    assert s.cpu_set == frozenset({0, 1}) and s.threads == 2
    with pytest.raises(ConfigError, match="cpus"):
        settings("--cpu", "x")


def test_from_needs_a_new_group_and_means_utc_without_a_zone() -> None:
    with pytest.raises(ConfigError, match="--group-id"):
        settings("--from", "2026-01-02T03:04:05")
    s = settings("--from", "2026-01-02T03:04:05", "--group-id", "replay-1")
    assert s.start_from == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert s.group_id == "replay-1"


def test_heartbeat_must_fit_the_session_three_times() -> None:
    with pytest.raises(ConfigError, match="heartbeat_interval_s"):
        load(ProcessorSettings, session_timeout_s=10, heartbeat_interval_s=4)


def test_group_names() -> None:
    s = settings("--topic-prefix", "evi")
    assert group_for(s, "blazeface-short", "blazeface-short") == "evi-processor-face"
    assert group_for(s, "blazeface-full", "blazeface-short") == "evi-processor-face-blazeface-full"
    s = settings("--group-id", "mine")
    assert group_for(s, "blazeface-full", "blazeface-short") == "mine"


def test_model_choice_and_threads_into_the_model_config() -> None:
    model, default = choose_model(settings())
    assert (model.name, default, model.inference_threads) == ("blazeface-short",) * 2 + (0,)
    model, _ = choose_model(settings("--threads", "3"))
    assert model.inference_threads == 3
    with pytest.raises(ConfigError, match="nope"):
        choose_model(settings("--model", "nope"))


def test_faust_settings_that_decide_correctness(tmp_path: Path) -> None:
    s = settings("--topic-prefix", "evi").model_copy(update={"cache_dir": tmp_path})
    cfg = faust_config(s, "evi-processor-face")
    app = faust.App(**cfg)  # faust validates them (e.g. session ≤ request timeout)
    c = app.conf
    assert c.id == "evi-processor-face"
    assert c.broker_commit_interval == 0.5
    assert c.broker_session_timeout == 10.0 and c.broker_heartbeat_interval == 2.0
    assert c.broker_max_poll_interval == 60.0
    assert c.consumer_auto_offset_reset == "earliest"  # = the KEDA trigger's offsetResetPolicy
    assert c.stream_buffer_maxsize == 512  # > 1 s of frames: faust sleeps 1 s when it fills
    assert c.stream_wait_empty is True and c.stream_publish_on_commit is False
    assert c.producer_acks == -1
    # Frame-sized limits move together: the topics' max.message.bytes and both client limits.
    topic_max = {int(spec.config["max.message.bytes"])
                 for spec in Topics(s.topics).specs(["face"]) if "max.message.bytes" in spec.config}
    assert topic_max == {s.topics.max_message_bytes}
    assert c.producer_max_request_size == c.consumer_max_fetch_size > s.topics.max_message_bytes
    assert s.frame_limit == s.topics.max_message_bytes
    bigger = s.model_copy(update={"topics": TopicSettings(max_message_bytes=8 << 20)})
    assert faust_config(bigger, "g")["producer_max_request_size"] > 8 << 20
