"""`evi produce`: publish video sources as JPEG frames to Kafka.

    evi produce --source sample: --count 100
    evi produce --source videos/lobby.mp4 --loop --kind face --kind person --fps 10
    evi produce --source rtsp://cam1/stream --stream cam1 --source 0 --stream desk
    evi produce --config streams.yaml --metrics-port 9101
    evi produce --samples 12 --fps 15 --loop
    evi produce --schedule demo --pace 3 --kind face

Each --source is one stream; --stream ids pair with --source flags in order. The other stream
flags apply to every stream, also to those from --config (flags > config file > env > defaults).
--samples N adds N sample streams (sample-1 ... sample-N). --schedule makes its own looping
sample streams that join, change their rate and leave on the named load schedule (evi/demo.py),
all in this one process.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from contextvars import ContextVar
from pathlib import Path
from types import FrameType
from typing import Annotated, Any, Literal

import cv2
import typer

from evi import log as evi_log
from evi.command import help_text, printed_settings, typer_app
from evi.command import run as run_command
from evi.demo import Schedule, demo_schedule
from evi.errors import ConfigError
from evi.metrics import serve
from evi.settings import die_on_config_error, load
from producers.config import build_streams, read_file
from producers.metrics import ProducerMetrics
from producers.runner import run
from producers.settings import ProducerSettings
from producers.sources import missing_file
from producers.sources.url import redact

STREAM_FLAGS = ("kinds", "fps", "loop", "count", "width", "height", "quality", "start",
                "duration")


cli = typer_app()
Repeated = list[str] | None
# The stop event a caller of main() passes (tests run a producer in a thread).
_STOP: ContextVar[threading.Event | None] = ContextVar("evi_produce_stop", default=None)


@cli.command(help=help_text(__doc__ or ""))
def produce(
    source: Annotated[Repeated, typer.Option(
        help="sample: | video file | camera index or /dev/videoN | rtsp/http URL | image folder "
             "or glob (repeat for more streams)")] = None,
    stream: Annotated[Repeated, typer.Option(
        help="stream id for the matching --source (default: from the source name)")] = None,
    config: Annotated[Path | None, typer.Option(help="streams file (.yaml/.yml/.toml)")] = None,
    kinds: Annotated[Repeated, typer.Option(
        "--kind", help="inference kind to feed (repeatable; default face)")] = None,
    fps: Annotated[float | None, typer.Option(
        help="frame-rate cap (default: the source's own rate); 0 = as fast as possible, where "
             "files, images and sample: wait for the broker instead of dropping frames")] = None,
    loop: Annotated[bool, typer.Option("--loop", help="replay recorded sources")] = False,
    count: Annotated[int | None, typer.Option(help="stop each stream after N frames")] = None,
    width: Annotated[int | None, typer.Option(
        help="resize before encoding (keeps aspect if alone)")] = None,
    height: Annotated[int | None, typer.Option()] = None,
    quality: Annotated[int | None, typer.Option(help="JPEG quality 1-100 (default 80)")] = None,
    start: Annotated[float | None, typer.Option(help="seconds to skip into a video file")] = None,
    duration: Annotated[float | None, typer.Option(
        help="seconds of a video file to send")] = None,
    samples: Annotated[int | None, typer.Option(
        metavar="N", help="add N sample streams sample-1 ... sample-N (`evi dev --streams N`)",
    )] = None,
    schedule: Annotated[Literal["demo"] | None, typer.Option(
        help="sample streams that join, change rate and leave (evi/demo.py)")] = None,
    pace: Annotated[float, typer.Option(help="play the schedule this much faster")] = 1.0,
    metrics_port: Annotated[int | None, typer.Option(
        help="serve /metrics on this port (0 = off)")] = None,
) -> int:
    a = argparse.Namespace(**locals())
    a.source, a.stream = a.source or [], a.stream or []
    a.loop = a.loop or None  # not given: the config file or env decides
    return publish(a, _STOP.get())


def main(argv: list[str] | None = None, stop: threading.Event | None = None) -> int:
    token = _STOP.set(stop)
    try:
        return run_command(cli, argv, "evi produce")
    finally:
        _STOP.reset(token)


def add_samples(args: argparse.Namespace, n: int) -> None:
    if not 1 <= n <= 256:
        raise ConfigError("want 1 <= --samples <= 256")
    if len(args.stream) < len(args.source):
        raise ConfigError("--samples with unnamed --source streams: give each --source a --stream")
    args.source = [*args.source, *["sample:"] * n]
    args.stream = [*args.stream, *[f"sample-{i}" for i in range(1, n + 1)]]


def schedule_from_args(args: argparse.Namespace) -> Schedule | None:
    """The load schedule, its sample streams added to args (which must name no other source);
    --samples streams added to args."""
    if args.schedule is None:
        if args.samples is not None:
            add_samples(args, args.samples)
        return None
    if args.source or args.config or args.samples:
        raise ConfigError("--schedule makes its own sample streams: drop --source/--config/"
                          "--samples")
    schedule = demo_schedule(args.pace)
    add_samples(args, schedule.max_streams)
    args.loop = True
    args.fps = max(s.fps for s in schedule.steps)  # real-time pacing, dropping oldest if behind
    return schedule


def settings_from_args(args: argparse.Namespace) -> tuple[ProducerSettings, list[str]]:
    """Settings from flags > config file > env > defaults, and per-stream error lines."""
    if len(args.stream) > len(args.source):
        raise ConfigError("--stream given without a matching --source: pair them in order")
    overrides = {k: getattr(args, k) for k in STREAM_FLAGS if getattr(args, k) is not None}
    streams: list[Any] = []
    errors: list[str] = []
    if args.config:
        doc = read_file(args.config)
        good, errors = build_streams(doc["streams"], doc["defaults"], overrides,
                                     f"in {args.config}")
        if not good:
            raise ConfigError("; ".join(errors))
        streams += good
    cli = [{"source": s} | ({"id": args.stream[i]} if i < len(args.stream) else {})
           for i, s in enumerate(args.source)]
    if cli:
        good, cli_errors = build_streams(cli, {}, overrides, "on the command line")
        if cli_errors:
            raise ConfigError("; ".join(cli_errors))
        streams += good
    flags: dict[str, Any] = {
        "streams": [s.model_dump() for s in streams] if streams else None,
        "metrics_port": args.metrics_port,
    }
    return load(ProducerSettings, **flags), errors


def printable(settings: ProducerSettings) -> str:
    doc = json.loads(settings.printable())
    for s in doc["streams"]:
        s["source"] = redact(s["source"])
    return json.dumps(doc, indent=2)


def _install_signals(stop: threading.Event) -> None:
    """First SIGINT/SIGTERM: stop capture, flush, mark streams ended. Second: exit now."""
    if threading.current_thread() is not threading.main_thread():
        return

    signalled = threading.Event()  # not `stop`: the runner sets that itself when streams end

    def handler(signum: int, frame: FrameType | None) -> None:
        if signalled.is_set():
            print("evi produce: forced exit", file=sys.stderr)
            os._exit(130)
        signalled.set()
        logging.getLogger("evi.producer").info("%s: flushing and stopping",
                                               signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def publish(args: argparse.Namespace, stop: threading.Event | None) -> int:
    try:
        schedule = schedule_from_args(args)
        settings, stream_errors = settings_from_args(args)
    except ConfigError as e:
        die_on_config_error(e)
        return 2  # unreachable: die_on_config_error exits
    if printed_settings(settings, printable(settings)):
        return 0
    for line in stream_errors:
        print(f"evi: bad config: {line}", file=sys.stderr)
    if not settings.streams:
        print("evi: bad config: no streams: give --source, --config or EVI_STREAMS",
              file=sys.stderr)
        return 2
    # A local file is there or not now; only live sources (cameras, URLs) are worth retrying.
    missing = {s.id: p for s in settings.streams if (p := missing_file(s.source))}
    for stream, problem in missing.items():
        print(f"evi produce: {problem} (stream {stream})", file=sys.stderr)
    if missing:
        left = [s for s in settings.streams if s.id not in missing]
        if not left:
            return 2
        settings = settings.model_copy(update={"streams": left})
    evi_log.setup(settings.log_level)
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # we log failures ourselves
    stop = stop or threading.Event()
    _install_signals(stop)
    metrics = ProducerMetrics()
    serve(settings.metrics_port, registry=metrics.registry)
    code = run(settings, stop, metrics, schedule=schedule)
    return 1 if stream_errors or missing else code


if __name__ == "__main__":
    raise SystemExit(main())
