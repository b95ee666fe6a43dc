"""Topic and consumer-group names: built here and nowhere else."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from evi.errors import ConfigError
from evi.settings import TopicSettings

_KIND = re.compile(r"^[a-z][a-z0-9-]{0,31}\Z")  # `\Z`: `$` lets a trailing newline through


def check_kind(kind: str) -> str:
    if not _KIND.match(kind):
        raise ConfigError(f"kind {kind!r} is not valid: use lower-case letters, digits and '-'")
    return kind


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)
    replication_factor: int = 1


@dataclass(frozen=True)
class Topics:
    settings: TopicSettings

    @property
    def prefix(self) -> str:
        return self.settings.prefix

    def frames(self, kind: str) -> str:
        return f"{self.prefix}.frames.{check_kind(kind)}"

    def results(self, kind: str) -> str:
        return f"{self.prefix}.results.{check_kind(kind)}"

    def dlq(self, kind: str) -> str:
        return f"{self.prefix}.dlq.{check_kind(kind)}"

    @property
    def streams(self) -> str:
        return f"{self.prefix}.streams"

    def inflight(self, group: str) -> str:
        """Frames a consumer group had running, per frames partition (processors/quarantine.py)."""
        return f"{self.prefix}.inflight.{group}"

    def inflight_spec(self, group: str, partitions: int) -> TopicSpec:
        """One partition per frames partition; compacted, a record per partition is enough."""
        return self._spec(self.inflight(group), partitions, {
            "cleanup.policy": "compact", "min.compaction.lag.ms": "0", "segment.ms": "600000",
            "min.cleanable.dirty.ratio": "0.1",
        })  # fmt: skip

    def _spec(self, name: str, partitions: int, config: dict[str, str]) -> TopicSpec:
        """Every topic evi creates: replicated as the settings say, with their
        min.insync.replicas (what an acks=all write needs)."""
        s = self.settings
        return TopicSpec(name, partitions,
                         config | {"min.insync.replicas": str(s.min_insync_replicas)},
                         s.replication_factor)  # fmt: skip

    def group(self, kind: str, model: str | None = None) -> str:
        """Consumer group (= faust app id) of a kind's processors; a second model gets its own."""
        base = f"{self.prefix}-processor-{check_kind(kind)}"
        return f"{base}-{model}" if model else base

    def kind_of_frames_topic(self, topic: str) -> str | None:
        head = f"{self.prefix}.frames."
        return topic[len(head) :] if topic.startswith(head) else None

    def specs(self, kinds: list[str]) -> list[TopicSpec]:
        """Every topic of these kinds (`evi kafka topics`, the topics job: an admin's work)."""
        return [self._registry_spec(), *(spec for kind in kinds for spec in self._kind_specs(kind))]

    def producer_specs(self, kinds: list[str]) -> list[TopicSpec]:
        """What a producer writes, so may create: the registry and the frames topics."""
        return [self._registry_spec(), *(self._frames_spec(kind) for kind in kinds)]

    def processor_specs(self, kind: str) -> list[TopicSpec]:
        """What a processor writes besides its in-flight topic: results and dead letters."""
        s = self.settings
        results_cfg = {
            "retention.ms": str(s.results_retention_ms),
            "max.message.bytes": str(s.max_message_bytes),
        }
        dlq_cfg = self._frames_cfg() | {"retention.ms": "604800000"}
        return [self._spec(self.results(kind), s.frame_partitions, results_cfg),
                self._spec(self.dlq(kind), 1, dlq_cfg)]  # fmt: skip

    def _kind_specs(self, kind: str) -> list[TopicSpec]:
        return [self._frames_spec(kind), *self.processor_specs(kind)]

    def _registry_spec(self) -> TopicSpec:
        return self._spec(
            self.streams, 1,
            {"cleanup.policy": "compact", "min.compaction.lag.ms": "0", "segment.ms": "60000"},
        )  # fmt: skip

    def _frames_spec(self, kind: str) -> TopicSpec:
        return self._spec(self.frames(kind), self.settings.frame_partitions, self._frames_cfg())

    def _frames_cfg(self) -> dict[str, str]:
        s = self.settings
        return {
            "retention.ms": str(s.frames_retention_ms),
            "retention.bytes": str(s.frames_retention_bytes),
            "segment.ms": str(min(s.frames_retention_ms, 600_000)),
            "max.message.bytes": str(s.max_message_bytes),
            "message.timestamp.type": "CreateTime",
        }
