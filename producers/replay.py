"""`evi replay`: publish a clip file, or a time window of a frames topic, again as a live stream.

    evi replay cam1.evi --kind face --stream cam1-replay --speed 2.0
    evi replay --from-topic evi.frames.face --since 2026-11-25T12:00:00.000Z \\
        --until 2026-11-25T12:05:00.000Z --to-stream cam1-again --speed max

The whole clip is checked before its first record is sent (a topic window is spooled to a
temporary clip first). Only these change: `evi-stream` and the key (--stream), `evi-ts` and the
record timestamp (rebased to now unless --keep-ts), `evi-producer` (`<replay id>/<original>`).
"""

from __future__ import annotations

import argparse
import heapq
import os
import signal
import socket
import sys
import tempfile
import threading
import time
from contextvars import ContextVar
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from confluent_kafka import KafkaError, KafkaException, Message, Producer
from pydantic import Field
from typer._click.exceptions import UsageError  # Typer 0.29 vendors its own Click

from evi.command import help_text, printed_settings, typer_app
from evi.command import run as run_command
from evi.errors import BadFrame, ConfigError
from evi.kafka import ensure_topics, explain
from evi.log import setup as setup_logging
from evi.progress import progress
from evi.settings import ServiceSettings, die_on_config_error
from evi.topics import Topics
from evi.wire import FrameMeta, StreamInfo, frame_headers, parse_frame, valid_stream_id
from producers import record as recorder
from producers.clip import ClipError, HeaderList, StreamPlan, check_clip, read_record_at
from producers.publisher import producer_config
from producers.record import WindowError, WindowReader, format_time, parse_time
from producers.registry import ENDED, ERROR, LIVE, Registry, registry_config
from producers.settings import PublisherSettings
from producers.sources import file_problem

Headers = list[tuple[str, str | bytes | None]]

TOPICS_TIMEOUT_S = 10.0  # an absent broker is given this long before replay gives up


class ReplaySettings(ServiceSettings):
    publisher: PublisherSettings = PublisherSettings()
    replay_id: str = Field(default_factory=lambda: f"replay-{socket.gethostname()}-{os.getpid()}")


class Pacer:
    """Replay time of each original capture time: origin + (ts - first) / speed. Falling more
    than `max_lag_s` behind moves the origin instead of bursting; speed None = as fast as
    possible, stamped with the send time."""

    def __init__(self, first_ts_ms: int, speed: float | None, mono: float, wall_ms: int,
                 max_lag_s: float = 1.0) -> None:
        self.first, self.speed, self.max_lag = first_ts_ms, speed, max_lag_s
        self.origin_mono, self.origin_ms = mono, wall_ms
        self.last_ms = wall_ms

    def delay(self, ts_ms: int, mono: float) -> float:
        if self.speed is None:
            return 0.0
        due = self.origin_mono + (ts_ms - self.first) / self.speed / 1000
        if mono - due > self.max_lag:
            self.origin_mono += mono - due
            self.origin_ms += round((mono - due) * 1000)
            due = mono
        return max(0.0, due - mono)

    def stamp(self, ts_ms: int, wall_ms: int) -> int:
        if self.speed is None:
            self.last_ms = max(self.last_ms, wall_ms)
            return self.last_ms
        return self.origin_ms + round((ts_ms - self.first) / self.speed)


def rewrite(headers: HeaderList, meta: FrameMeta, new: FrameMeta) -> Headers:
    """The original headers in their order, with only the frame fields that changed replaced."""
    before, after = dict(frame_headers(meta)), dict(frame_headers(new))
    changed = {k: v for k, v in after.items() if before[k] != v}
    return [(k, changed.get(k, v)) for k, v in headers]


class Sender:
    """One idempotent librdkafka producer (the publisher's config); counts acks and errors."""

    def __init__(self, s: ReplaySettings) -> None:
        self.timeout_s = s.publisher.message_timeout_ms / 1000
        self.producer = Producer(producer_config(s.kafka, s.publisher, s.topics.max_message_bytes,
                                                 s.replay_id))
        self.acked = self.failed = 0
        self.error = ""

    def _done(self, err: KafkaError | None, msg: Message) -> None:
        if err is None:
            self.acked += 1
        else:
            self.failed += 1
            self.error = self.error or err.str()

    def send(self, topic: str, key: bytes, value: bytes, headers: Headers, ts_ms: int) -> None:
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                self.producer.produce(topic, value, key, headers=headers, timestamp=ts_ms,
                                      on_delivery=self._done)
                break
            except BufferError:
                if time.monotonic() > deadline:
                    raise KafkaException(KafkaError(KafkaError._QUEUE_FULL)) from None
                self.producer.poll(0.05)
        self.producer.poll(0)


@dataclass
class Job:
    clip: Path
    topic: str
    kind: str
    source: str  # what the registry shows as the stream's source
    plans: dict[str, StreamPlan]
    rename: dict[str, str]
    speed: float | None
    keep_ts: bool


def run(s: ReplaySettings, job: Job, stop: threading.Event) -> int:
    """Publish the checked clip; 0 iff every frame was acknowledged."""
    topics = Topics(s.topics)
    try:
        ensure_topics(s.kafka, topics.specs([job.kind]), timeout=TOPICS_TIMEOUT_S)
    except KafkaException as err:
        print(f"evi replay: {explain(s.kafka, err, TOPICS_TIMEOUT_S)}", file=sys.stderr)
        return 1
    sender = Sender(s)
    registry = Registry(registry_config(s.kafka.client_config(), s.replay_id), topics.streams,
                        s.replay_id)
    infos = [registry.update(StreamInfo(
        job.rename.get(p.stream, p.stream), job.source, [job.kind],
        0.0 if job.speed is None else p.fps() * job.speed, p.width, p.height, LIVE))
        for p in job.plans.values()]
    order = list(heapq.merge(*(p.frames for p in job.plans.values()), key=lambda e: e.ts_ms))
    pacer = Pacer(order[0].ts_ms, job.speed, time.monotonic(), int(time.time() * 1000))
    sent, started, problem = 0, time.monotonic(), ""
    try:
        with open(job.clip, "rb") as f, progress(f"replaying to {job.topic}", len(order)) as bar:
            for e in order:
                if sender.failed or stop.wait(pacer.delay(e.ts_ms, time.monotonic())):
                    break
                rec = read_record_at(f, e.pos, str(job.clip), e.index)
                meta = parse_frame(rec.key, rec.value, rec.headers)
                out = job.rename.get(meta.stream, meta.stream)
                ts = meta.ts_ms if job.keep_ts else pacer.stamp(e.ts_ms, int(time.time() * 1000))
                new = replace(meta, stream=out, ts_ms=ts, producer=f"{s.replay_id}/{meta.producer}")
                sender.send(job.topic, out.encode(), rec.value, rewrite(rec.headers, meta, new),
                            rec.ts_ms if job.keep_ts else ts)
                sent += 1
                bar.advance()
                if sent == 1:  # the timeline starts once the first frame is in: no warm-up burst
                    sender.producer.flush(sender.timeout_s)
                    pacer.origin_mono = time.monotonic()
    except (OSError, ClipError, BadFrame, KafkaException) as e:  # the clip changed, broker gone
        problem = f"{e}; "
    left: int = sender.producer.flush(sender.timeout_s + 5)
    failed = bool(left or sender.failed or problem)
    if failed or sent < len(order):
        problem += ("stopped by a signal: " if not failed else "") + (
            f"published {sender.acked} of {len(order)} frames") + (
            f"; {sender.failed + left} not delivered: {sender.error or 'flush timed out'}"
            if left or sender.failed else "")
    for info in infos:
        registry.update(info, status=ERROR if failed else ENDED, message=problem)
    registry.close(5.0)
    if problem:
        print(f"evi replay: {problem}", file=sys.stderr)
        return 1
    names = ", ".join(f"{k}->{job.rename.get(k, k)}" for k in job.plans)
    pace = "max speed" if job.speed is None else f"{job.speed:g}x"
    print(f"replayed {sent} frames ({names}) to {job.topic} at {pace} in "
          f"{time.monotonic() - started:.1f}s")
    return 0


cli = typer_app()
# The stop event a caller of main() passes (tests replay in a thread).
_STOP: ContextVar[threading.Event | None] = ContextVar("evi_replay_stop", default=None)


@cli.command(help=help_text(__doc__ or ""))
def replay_command(
    clip: Annotated[Path | None, typer.Argument(
        help="clip file written by `evi record`", show_default=False)] = None,
    from_topic: Annotated[str | None, typer.Option(
        help="replay a window of this frames topic instead of a clip")] = None,
    since: Annotated[str | None, typer.Option(
        help="--from-topic window start (ISO 8601, epoch ms or 'now')")] = None,
    until: Annotated[str, typer.Option(help="--from-topic window end, not included")] = "now",
    kind: Annotated[str | None, typer.Option(
        help="publish to evi.frames.<kind> (default: the source's kind)")] = None,
    from_stream: Annotated[list[str] | None, typer.Option(
        help="replay only this source stream (repeatable; default all)")] = None,
    to_stream: Annotated[str | None, typer.Option(
        "--stream", "--to-stream",
        help="publish under this stream id (the source must hold one stream)")] = None,
    speed_text: Annotated[str, typer.Option(
        "--speed", metavar="SPEED", help="1.0 = original pacing, 2.0 = twice as fast, max = as "
                                         "fast as the broker takes them")] = "1.0",
    keep_ts: Annotated[bool, typer.Option(
        "--keep-ts", help="keep the original capture timestamps instead of rebasing them to now",
    )] = False,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="check the source, print, send nothing")] = False,
    spool_dir: Annotated[Path | None, typer.Option(
        help="where a topic window is spooled (default TMP)")] = None,
    timeout: Annotated[float, typer.Option(help="topic read idle timeout, seconds")] = 30.0,
) -> int:
    a = argparse.Namespace(**locals())
    a.from_stream = a.from_stream or []
    a.speed = speed(speed_text)
    return replay_from(a, _STOP.get())


def main(argv: list[str] | None = None, stop: threading.Event | None = None) -> int:
    token = _STOP.set(stop)
    try:
        return run_command(cli, argv, "evi replay")
    finally:
        _STOP.reset(token)


def speed(text: str) -> float | None:
    """--speed: a factor 0.01-1000, or None for 'max'."""
    try:
        value = 1.0 if text == "max" else float(text)
    except ValueError:
        value = 0.0
    if not 0.01 <= value <= 1000:
        raise typer.BadParameter(f"{text!r}: use a factor 0.01-1000 or 'max'",
                                 param_hint="'--speed'")
    return None if text == "max" else value


def make_job(s: ReplaySettings, a: argparse.Namespace, clip: Path, source: str,
             kind: str | None) -> Job:
    only = frozenset(a.from_stream)
    meta, plans = check_clip(clip, s.topics.max_message_bytes, only)
    kind = a.kind or kind or (str(meta["kind"]) if meta.get("kind") else None)
    if not kind:
        raise ConfigError("the clip does not say its kind: give --kind")
    topics = Topics(s.topics)
    rename: dict[str, str] = {}
    if a.to_stream:
        if not valid_stream_id(a.to_stream):
            raise ConfigError(f"stream id {a.to_stream!r} is not valid")
        if len(plans) > 1:
            raise ConfigError(f"the source holds streams {', '.join(sorted(plans))}: choose one "
                              "with --from-stream to rename it")
        rename = {next(iter(plans)): a.to_stream}
    if a.from_topic == topics.frames(kind) and any(rename.get(p, p) == p for p in plans):
        raise ConfigError("copying a window into the same topic under the same stream id would "
                          "mix it into the live stream: give --to-stream")
    return Job(clip, topics.frames(kind), kind, source, plans, rename, a.speed, a.keep_ts)


def _signals(stop: threading.Event) -> None:
    if threading.current_thread() is not threading.main_thread():
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            os._exit(130)  # the second signal forces
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def replay(s: ReplaySettings, a: argparse.Namespace, stop: threading.Event) -> int:
    if a.from_topic is None:
        return _go(s, a, make_job(s, a, a.clip, f"replay:{a.clip.name}", None), stop)
    if not a.since:
        raise ConfigError("--from-topic needs --since")
    now = int(time.time() * 1000)
    since, until = parse_time(a.since, now), parse_time(a.until, now)
    reader = WindowReader(s.kafka, a.from_topic, since, until, frozenset(a.from_stream),
                          s.topics.max_message_bytes, a.timeout)
    kind = Topics(s.topics).kind_of_frames_topic(a.from_topic)
    with tempfile.TemporaryDirectory(prefix="evi-replay-", dir=a.spool_dir) as tmp:
        clip = Path(tmp) / "window.evi"
        recorder.record(reader, clip, {"tool": "evi replay", "topic": a.from_topic,
                                       "kind": kind, "since_ms": since, "until_ms": until,
                                       "created_ms": now})
        job = make_job(s, a, clip, f"replay:{a.from_topic}@{format_time(since)}", kind)
        return _go(s, a, job, stop)


def _go(s: ReplaySettings, a: argparse.Namespace, job: Job, stop: threading.Event) -> int:
    for p in job.plans.values() if a.dry_run else ():
        span = f"{format_time(p.frames[0].ts_ms)}..{format_time(p.frames[-1].ts_ms)}"
        print(f"{p.stream} -> {job.rename.get(p.stream, p.stream)}: {len(p.frames)} frames "
              f"{p.width}x{p.height} {span} ({p.fps():g} fps) to {job.topic}")
    return 0 if a.dry_run else run(s, job, stop)


def clip_problem(clip: Path) -> str | None:
    """Why the clip file cannot be read at all (what it holds is checked by check_clip)."""
    return file_problem(clip, "clip file", str(clip))


def replay_from(a: argparse.Namespace, stop: threading.Event | None) -> int:
    if (a.clip is None) == (a.from_topic is None):
        raise UsageError("give a clip file or --from-topic (one of them)")
    problem = clip_problem(a.clip) if a.clip is not None else None
    if problem:
        print(f"evi replay: {problem}", file=sys.stderr)
        return 2
    stop = stop or threading.Event()
    try:
        s = recorder.settings_from(ReplaySettings, a)
        if printed_settings(s):
            return 0
        setup_logging(s.log_level)
        _signals(stop)
        return replay(s, a, stop)
    except ConfigError as e:
        die_on_config_error(e)
        return 2
    except (ClipError, WindowError, OSError) as e:
        print(f"evi replay: {e}", file=sys.stderr)
        return 1
    except KafkaException as e:
        print(f"evi replay: Kafka: {e.args[0].str()}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
