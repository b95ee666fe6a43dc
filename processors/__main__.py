"""`evi process --kind face`: one processor worker (a faust worker in consumer group
`evi-processor-<kind>`, or `evi-processor-<kind>-<model>` for a second model of the kind).

Exit codes: 0 after a clean stop (SIGTERM/SIGINT: drained, committed, left the group), 2 for bad
configuration, 70 after a fatal error (the uncommitted frames are replayed by the next owner) or
when Kafka does not answer within kafka.startup_wait_s of the start.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from evi.command import common_of, help_text, parse, printed_settings, run, typer_app
from evi.errors import ConfigError
from evi.log import setup as setup_logging
from evi.settings import die_on_config_error, given_flags, load
from processors.settings import ProcessorSettings

if TYPE_CHECKING:
    from processors.models import ModelConfig

log = logging.getLogger("evi.processor")


cli = typer_app()
Policy = Literal["process-all", "drop-stale"]


@cli.command(help=help_text(__doc__ or ""))
def process(
    kind: Annotated[str | None, typer.Option(
        help="inference kind to serve (topic evi.frames.<kind>)")] = None,
    model: Annotated[str | None, typer.Option(
        help="model entry of the kind to serve (default: the kind's own)")] = None,
    models_file: Annotated[str | None, typer.Option(
        help="models.yaml (default: built-in BlazeFace for face)")] = None,
    group_id: Annotated[str | None, typer.Option(
        help="consumer group override (default evi-processor-<kind>)")] = None,
    start_from: Annotated[datetime | None, typer.Option(
        "--from", parser=datetime.fromisoformat, metavar="ISO_TIME",
        help="start a NEW group (--group-id) at the frames of this time (UTC if no zone)",
    )] = None,
    web_port: Annotated[int | None, typer.Option(
        help="port of /metrics, /healthz, /readyz (0 = free)")] = None,
    batch_max: Annotated[int | None, typer.Option(help="frames per micro-batch")] = None,
    decode_threads: Annotated[int | None, typer.Option(help="JPEG decode threads")] = None,
    infer_batch: Annotated[int | None, typer.Option(
        help="frames per inference request under a backlog (1: one each)")] = None,
    cpus: Annotated[str | None, typer.Option(
        "--cpu", help="CPU affinity, e.g. 0 or 0,2-3 (taskset -c form)")] = None,
    threads: Annotated[int | None, typer.Option(
        help="OpenVINO INFERENCE_NUM_THREADS (0 = model's)")] = None,
    concurrency: Annotated[int | None, typer.Option(
        help="agent concurrency; must be 1 (see docs)")] = None,
    commit_interval_s: Annotated[float | None, typer.Option(
        "--commit-interval", help="seconds")] = None,
    max_poll_interval_s: Annotated[float | None, typer.Option(
        "--max-poll-interval", help="seconds")] = None,
    max_frame_bytes: Annotated[int | None, typer.Option(
        help="larger frames are dead-lettered")] = None,
    policy: Annotated[Policy | None, typer.Option()] = None,
    max_age_ms: Annotated[int | None, typer.Option(
        help="drop-stale: frames older than this are skipped")] = None,
) -> int:
    return serve(argparse.Namespace(**locals()))


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The flags' values, common ones too, without running (tests)."""
    return parse(cli, argv, "evi process")


def main(argv: list[str] | None = None) -> int:
    return run(cli, argv, "evi process")


FLAGS = (
    "kind", "model", "models_file", "group_id", "start_from", "web_port", "batch_max",
    "decode_threads", "infer_batch", "cpus", "threads", "concurrency", "commit_interval_s",
    "max_poll_interval_s", "max_frame_bytes", "policy", "max_age_ms",
)  # fmt: skip


def build_settings(a: argparse.Namespace) -> ProcessorSettings:
    flags: dict[str, Any] = {name: getattr(a, name) for name in FLAGS}
    with given_flags(common_of(a)):
        return load(ProcessorSettings, **flags)


def choose_model(s: ProcessorSettings) -> tuple[ModelConfig, str]:
    """The model entry to serve and the name of the kind's default one (which keeps the plain
    group name). Uses `models.select_model` where it exists (several models per kind)."""
    from processors import models as m

    table: Any = m.load_models_yaml(s.models_file) if s.models_file else m.default_models()
    select = getattr(m, "select_model", None)
    if select is not None:
        chosen: ModelConfig = select(table, s.kind, s.model)
        default: ModelConfig = select(table, s.kind, None)
    else:
        if s.kind not in table:
            raise ConfigError(f"kind {s.kind!r} has no model (known: {', '.join(sorted(table))})")
        chosen = default = table[s.kind]
        if s.model is not None and s.model != chosen.name:
            raise ConfigError(f"kind {s.kind!r} has no model {s.model!r} (known: {chosen.name})")
    if s.threads:
        chosen = chosen.model_copy(update={"inference_threads": s.threads})
    return chosen, default.name


def pin_cpus(s: ProcessorSettings) -> None:
    """Before OpenVINO starts its threads, so they inherit the affinity."""
    cpus = s.cpu_set
    if cpus is None:
        return
    try:
        os.sched_setaffinity(0, cpus)
    except OSError as e:
        raise ConfigError(f"cpus: cannot pin to {s.cpus}: {e.strerror}") from None


def use_event_loop(name: str) -> None:
    """Before faust makes its loop. uvloop's call_soon, futures and sockets cost a fraction of
    asyncio's, and the loop is the worker's busiest thread."""
    if name == "uvloop":
        try:
            import mode.loop

            mode.loop.use("uvloop")
        except ImportError:
            log.warning("uvloop is not installed: asyncio loop")


def broker_up(s: ProcessorSettings) -> bool:
    """Whether Kafka answered within kafka.startup_wait_s. aiokafka gives up at once on a broker
    that is not there (faust then exits with a traceback), and a worker that starts before its
    broker, as in a fresh `docker compose up`, should wait for it instead; said once."""
    from evi.kafka import broker_answers, wait_for_broker

    if broker_answers(s.kafka):
        return True
    log.warning("Kafka at %s does not answer: retrying for up to %g s", s.kafka.bootstrap_servers,
                s.kafka.startup_wait_s)
    try:
        wait_for_broker(s.kafka, s.kafka.startup_wait_s)
    except TimeoutError as e:
        print(f"evi process: {e}", file=sys.stderr)
        return False
    log.info("Kafka at %s answers", s.kafka.bootstrap_servers)
    return True


def ensure_outputs(s: ProcessorSettings) -> None:
    """The results and dead-letter topics exist before the first delivery (the broker creates
    no topic by itself). Where the principal may not create topics, the topics job did."""
    from confluent_kafka import KafkaException

    from evi.kafka import ensure_topics
    from evi.topics import Topics

    try:
        ensure_topics(s.kafka, Topics(s.topics).processor_specs(s.kind), timeout=10)
    except KafkaException as e:
        logging.getLogger("evi.processor").warning(
            "cannot create the results and dead-letter topics (%s): expecting them to exist",
            e.args[0].str() if e.args else e)


def serve(a: argparse.Namespace) -> int:
    try:
        s = build_settings(a)
        pin_cpus(s)
    except ConfigError as e:
        die_on_config_error(e)
    if printed_settings(s):
        return 0
    setup_logging(s.log_level)
    use_event_loop(s.event_loop)
    # Heavy imports after argument checks, so `--help` and bad flags answer at once.
    from processors.app import Processor, group_for
    from processors.pipeline import FramePipeline
    from processors.shutdown import EX_SOFTWARE, DrainingWorker

    try:
        model, default_name = choose_model(s)
        pipeline = FramePipeline.create(s.kind, model, s.cache_dir, s.decode_threads,
                                        s.decode_budget, s.infer_batch)  # fmt: skip
    except ConfigError as e:
        die_on_config_error(e)
    try:
        up = broker_up(s)
    except KeyboardInterrupt:  # Ctrl-C while waiting: nothing was consumed, nothing to drain
        pipeline.close()
        return 130
    if not up:
        pipeline.close()
        return EX_SOFTWARE
    ensure_outputs(s)
    proc = Processor(s, pipeline, group_for(s, model.name, default_name))
    worker = DrainingWorker(
        proc.app, proc.lifecycle, loglevel=s.log_level, quiet=True, redirect_stdouts=False,
        override_logging=False,
    )
    code = left = 0
    try:
        worker.execute_from_commandline()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    finally:
        left = proc.sink.close()  # all acked batches were delivered; this is what is left
        pipeline.close()
    if left:
        print(f"evi process: {left} records undelivered at exit (replayed)", file=sys.stderr)
    return proc.lifecycle.exit_code or code


if __name__ == "__main__":
    sys.exit(main())
