"""Shared fixtures. Integration tests use the real broker that `make test` starts
(deploy/kafka/kafka.sh start); each test gets its own topic prefix and groups."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from evi.kafka import broker_answers, ensure_topics
from evi.settings import KafkaSettings, TopicSettings
from evi.topics import Topics
from tests.helpers import delete_topics_with_prefix

BOOTSTRAP = os.environ.get("EVI_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:9092")


@pytest.fixture(scope="session")
def kafka() -> KafkaSettings:
    settings = KafkaSettings(bootstrap_servers=BOOTSTRAP)
    if not broker_answers(settings, timeout=5.0):
        # Fail, never skip: a missing broker is a broken test setup, not a passing test.
        pytest.fail(f"no Kafka broker at {BOOTSTRAP}: run `deploy/kafka/kafka.sh start` first")
    return settings


@pytest.fixture
def topic_settings() -> TopicSettings:
    """A fresh topic prefix per test, so tests never see each other's records."""
    return TopicSettings(prefix=f"t{uuid.uuid4().hex[:10]}", frame_partitions=4)


@pytest.fixture
def topics(kafka: KafkaSettings, topic_settings: TopicSettings) -> Iterator[Topics]:
    t = Topics(topic_settings)
    ensure_topics(kafka, t.specs(["face"]))
    yield t
    delete_topics_with_prefix(kafka, t.prefix)
