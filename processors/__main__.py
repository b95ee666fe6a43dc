"""`evi process --kind face`: one processor worker (a faust worker in consumer group
`evi-processor-<kind>`)."""

from __future__ import annotations

import argparse
import sys

from evi.errors import ConfigError
from evi.log import setup as setup_logging
from evi.settings import die_on_config_error, load, override
from processors.settings import ProcessorSettings


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="evi process", description=__doc__)
    p.add_argument("--kind", help="inference kind to serve (topic evi.frames.<kind>)")
    p.add_argument("--model", help="model entry of the kind to serve (default: the kind's own)")
    p.add_argument("--models-file", help="models.yaml (default: built-in BlazeFace for face)")
    p.add_argument("--bootstrap-servers", help="Kafka bootstrap servers")
    p.add_argument("--topic-prefix", help="topic name prefix (default evi)")
    p.add_argument("--web-port", type=int, help="port of /metrics and /healthz (0 = any free)")
    p.add_argument("--batch-max", type=int, help="frames per micro-batch")
    p.add_argument("--policy", choices=["process-all", "drop-stale"])
    p.add_argument("--max-age-ms", type=int, help="drop-stale: frames older than this are skipped")
    p.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.add_argument("--print-settings", action="store_true", help="print effective settings, exit")
    return p.parse_args(argv)


def build_settings(a: argparse.Namespace) -> ProcessorSettings:
    base = load(ProcessorSettings)  # env + defaults, so nested flags override single fields
    kafka = override(base.kafka, bootstrap_servers=a.bootstrap_servers)
    topics = override(base.topics, prefix=a.topic_prefix)
    return load(
        ProcessorSettings,
        kind=a.kind, model=a.model, models_file=a.models_file, kafka=kafka, topics=topics,
        web_port=a.web_port, batch_max=a.batch_max, policy=a.policy, max_age_ms=a.max_age_ms,
        log_level=a.log_level,
    )


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    try:
        s = build_settings(a)
    except ConfigError as e:
        die_on_config_error(e)
    if a.print_settings:
        print(s.printable())
        return 0
    setup_logging(s.log_level)
    # Heavy imports after argument checks, so `--help` and bad flags answer at once.
    import faust

    from processors.app import create_app
    from processors.models import default_models, load_models_yaml
    from processors.pipeline import FramePipeline

    try:
        models = load_models_yaml(s.models_file) if s.models_file else default_models()
        if s.kind not in models:
            raise ConfigError(f"kind {s.kind!r} has no model (known: {', '.join(sorted(models))})")
        pipeline = FramePipeline.create(s.kind, models[s.kind], s.cache_dir, s.decode_threads)
    except ConfigError as e:
        die_on_config_error(e)
    app = create_app(s, pipeline)
    worker = faust.Worker(app, loglevel=s.log_level, quiet=True, redirect_stdouts=False)
    try:
        worker.execute_from_commandline()
    finally:
        pipeline.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
