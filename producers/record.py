"""`evi record`: save a time window of a frames topic to a clip file (producers/clip.py).

    evi record --kind face --stream cam1 --since 2026-11-25T12:00:00.000Z \\
        --until 2026-11-25T12:05:00.000Z --out cam1.evi

The window is Kafka's: on each partition, from the first record whose timestamp is at or after
--since up to (not including) the first at or after --until; the same offsets
`kafka-consumer-groups --to-datetime` and `kcat -o s@<ms> -o e@<ms>` use. An --until in the
future means "up to the records there are now": recording never waits for live frames.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from confluent_kafka import Consumer, KafkaException, TopicPartition

from evi.command import help_text, printed_settings, run, typer_app
from evi.errors import BadFrame, ConfigError
from evi.kafka import explain, offsets_at, partitions_of, unreachable, watermarks
from evi.log import setup as setup_logging
from evi.progress import Task, progress
from evi.settings import KafkaSettings, ServiceSettings, die_on_config_error, load
from evi.topics import Topics
from evi.wire import parse_frame
from producers.clip import ClipRecord, ClipWriter

log = logging.getLogger("evi.record")

Headers = list[tuple[str, str | bytes | None]] | dict[str, str | bytes | None]


class WindowError(RuntimeError):
    """The window cannot be read: unknown topic, no frames, broker gone."""


def parse_time(text: str, now_ms: int | None = None) -> int:
    """Epoch ms from `now`, digits (epoch ms) or ISO 8601; no zone means UTC, as in Kafka's
    `--to-datetime` (`2026-11-25T12:00:00.000`, `...Z`, `...+01:00`, seconds or ms)."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    t = text.strip()
    if t == "now":
        return now
    if t.isdigit():
        return int(t)
    try:
        dt = datetime.fromisoformat(t)
    except ValueError:
        raise ConfigError(f"time {text!r} is not ISO 8601 (2026-11-25T12:00:00.000Z), epoch "
                          "milliseconds or 'now'") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


def format_time(ms: int) -> str:
    """The form Kafka's `--to-datetime` takes: `2026-11-25T12:00:00.123Z`."""
    dt = datetime.fromtimestamp(ms / 1000, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


class WindowReader:
    """The valid frames of `streams` (empty: all) in [since, until) of a topic, per partition in
    offset order; bounded by the end offsets found at start and an idle timeout."""

    def __init__(self, kafka: KafkaSettings, topic: str, since_ms: int, until_ms: int,
                 streams: frozenset[str] = frozenset(), max_bytes: int = 0,
                 idle_timeout: float = 30.0) -> None:
        if until_ms <= since_ms:
            raise ConfigError(f"--until {format_time(until_ms)} is not after --since "
                              f"{format_time(since_ms)}")
        self.kafka, self.topic = kafka, topic
        self.since_ms, self.until_ms = since_ms, until_ms
        self.streams, self.max_bytes, self.idle_timeout = streams, max_bytes, idle_timeout
        self.ranges: dict[int, tuple[int, int]] = {}
        self.skipped: Counter[str] = Counter()  # records that are not valid frames, by reason
        self.other_streams = 0  # frames of streams not asked for
        self.progress = Task()  # records read of the window's total, once it is planned

    def _consumer(self) -> Consumer:
        return Consumer(self.kafka.client_config() | {
            "group.id": f"evi-record-{uuid.uuid4().hex[:12]}",  # never joins nor commits
            "enable.auto.commit": False, "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest", "fetch.wait.max.ms": 100,
        })

    def _plan(self, c: Consumer, timeout: float = 10.0) -> None:
        try:
            n = partitions_of(self.kafka, self.topic, timeout)
        except KeyError:
            raise WindowError(f"topic {self.topic} does not exist (check --kind, "
                              "--topic-prefix or --from-topic)") from None
        parts = list(range(n))
        starts = offsets_at(c, self.topic, parts, self.since_ms, timeout)
        ends = offsets_at(c, self.topic, parts, self.until_ms, timeout)
        for p in parts:
            start, end = starts[p], ends[p]
            if start < end:
                self.ranges[p] = (start, end)
                low = watermarks(c, self.topic, [p], timeout)[p][0]
                if start == low > 0:
                    log.warning("%s[%d]: records before offset %d were deleted by retention; "
                                "the window may start later than --since", self.topic, p, low)
        self.progress.update(total=sum(end - start for start, end in self.ranges.values()))

    def __iter__(self) -> Iterator[ClipRecord]:
        c = self._consumer()
        started = time.monotonic()
        try:
            self._plan(c)
            if not self.ranges:
                return
            c.assign([TopicPartition(self.topic, p, s) for p, (s, _) in self.ranges.items()])
            yield from self._consume(c)
        except KafkaException as e:
            if unreachable(e):
                raise WindowError(explain(self.kafka, e, round(time.monotonic() - started))
                                  ) from None
            raise WindowError(f"reading {self.topic} failed: {e.args[0].str()}") from None
        finally:
            c.close()

    def _consume(self, c: Consumer) -> Iterator[ClipRecord]:
        pending = dict(self.ranges)
        last_progress = time.monotonic()
        while pending:
            if time.monotonic() - last_progress > self.idle_timeout:
                left = ", ".join(f"[{p}] {s}..{e}" for p, (s, e) in sorted(pending.items()))
                raise WindowError(f"{self.topic}: no records for {self.idle_timeout:.0f}s while "
                                  f"partitions {left} were not read to the end")
            for m in c.consume(500, 0.5):
                err = m.error()
                if err is not None:
                    if err.fatal() or not err.retriable():
                        raise KafkaException(err)
                    continue
                last_progress = time.monotonic()
                p, off = m.partition(), m.offset() or 0
                if p not in pending or off >= pending[p][1]:
                    continue
                self.progress.advance()
                if off + 1 >= pending[p][1]:
                    del pending[p]
                rec = self._frame(m.key(), m.value(), m.headers(), m.timestamp()[1])
                if rec is not None:
                    yield rec
            for tp in c.position([TopicPartition(self.topic, p) for p in list(pending)]):
                if tp.offset >= pending[tp.partition][1]:  # a gap (compaction, markers)
                    del pending[tp.partition]

    def _frame(self, key: bytes | None, value: bytes | None, raw: Headers | None,
               ts_ms: int) -> ClipRecord | None:
        items = raw.items() if isinstance(raw, dict) else raw or []
        headers = tuple((k, v.encode() if isinstance(v, str) else v) for k, v in items)
        try:
            meta = parse_frame(key, value, headers, self.max_bytes)
        except BadFrame as bad:
            self.skipped[bad.reason] += 1
            return None
        if self.streams and meta.stream not in self.streams:
            self.other_streams += 1
            return None
        return ClipRecord(ts_ms, key, headers, value or b"")


cli = typer_app()


@cli.command(help=help_text(__doc__ or ""))
def record_command(
    since: Annotated[str, typer.Option(
        help="window start, ISO 8601 (UTC if no zone), epoch ms or 'now'")],
    out: Annotated[Path, typer.Option(help="clip file to write")],
    kind: Annotated[str, typer.Option(
        help="frames topic evi.frames.<kind> (default face)")] = "face",
    from_topic: Annotated[str | None, typer.Option(
        help="read this topic instead of the kind's frames topic")] = None,
    stream: Annotated[list[str] | None, typer.Option(
        help="stream id to keep (repeatable; default: every stream)")] = None,
    until: Annotated[str, typer.Option(help="window end, not included (default now)")] = "now",
    force: Annotated[bool, typer.Option("--force", help="overwrite --out if it exists")] = False,
    timeout: Annotated[float, typer.Option(
        help="give up when the broker sends nothing for this many seconds")] = 30.0,
) -> int:
    a = argparse.Namespace(**locals())
    a.stream = a.stream or []
    return record_window(a)


def main(argv: list[str] | None = None) -> int:
    return run(cli, argv, "evi record")


S = TypeVar("S", bound=ServiceSettings)


def settings_from(cls: type[S], a: argparse.Namespace) -> S:
    """The command's settings: its common flags (evi/command.py) over env over defaults."""
    return load(cls)


def record(reader: WindowReader, out: Path, meta: dict[str, object]) -> Counter[str]:
    """Write the window to `out` (atomically); frames per stream. WindowError if empty."""
    writer = ClipWriter(out, meta)
    per_stream: Counter[str] = Counter()
    try:
        with progress(f"reading {reader.topic}") as reader.progress:
            for rec in reader:
                writer.write(rec)
                per_stream[(rec.key or b"").decode()] += 1
        if not writer.count:
            asked = ", ".join(sorted(reader.streams)) or "any stream"
            raise WindowError(
                f"no frames of {asked} in {reader.topic} between "
                f"{format_time(reader.since_ms)} and {format_time(reader.until_ms)}"
                + (f" ({reader.other_streams} frames of other streams)"
                   if reader.other_streams else ""))
        writer.close()
    except BaseException:
        writer.abort()
        raise
    return per_stream


def out_problem(out: Path) -> str | None:
    """Why --out cannot be written, found before the window is read."""
    folder = out.parent
    if not folder.is_dir():
        return f"no such directory for --out: {folder}"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"cannot write to directory {folder}: permission denied"
    if out.is_dir():
        return f"--out {out} is a directory"
    return None


def record_window(a: argparse.Namespace) -> int:
    try:
        s = settings_from(ServiceSettings, a)
        if printed_settings(s):
            return 0
        topic = a.from_topic or Topics(s.topics).frames(a.kind)
        now = int(time.time() * 1000)
        since, until = parse_time(a.since, now), parse_time(a.until, now)
        reader = WindowReader(s.kafka, topic, since, until, frozenset(a.stream),
                              s.topics.max_message_bytes, a.timeout)
    except ConfigError as e:
        die_on_config_error(e)
        return 2
    setup_logging(s.log_level)
    problem = out_problem(a.out)
    if problem:
        print(f"evi record: {problem}", file=sys.stderr)
        return 2
    if a.out.exists() and not a.force:
        print(f"evi record: {a.out} exists; use --force to overwrite it", file=sys.stderr)
        return 1
    meta: dict[str, object] = {
        "tool": "evi record", "topic": topic, "kind": Topics(s.topics).kind_of_frames_topic(topic),
        "since_ms": since, "until_ms": until, "streams": sorted(a.stream), "created_ms": now,
    }
    started = time.monotonic()
    try:
        per_stream = record(reader, a.out, meta)
    except WindowError as e:
        print(f"evi record: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"evi record: cannot write {a.out}: {e.strerror}", file=sys.stderr)
        return 1
    for reason, n in sorted(reader.skipped.items()):
        print(f"evi record: skipped {n} records that are not valid frames ({reason})",
              file=sys.stderr)
    total = sum(per_stream.values())
    streams = ", ".join(f"{k}={v}" for k, v in sorted(per_stream.items()))
    print(f"recorded {total} frames ({streams}) from {topic} between {format_time(since)} and "
          f"{format_time(until)} to {a.out} ({a.out.stat().st_size} bytes, "
          f"{time.monotonic() - started:.1f}s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
