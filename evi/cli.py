"""The `evi` command. Service subcommands are dispatched by module name, so this shared core
never imports a service (and `evi --help` stays fast)."""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
import time
from collections.abc import Callable

from evi.errors import ConfigError
from evi.extras import require
from evi.paths import kafka_script
from evi.settings import ServiceSettings, die_on_config_error, load

KAFKA_SCRIPT = kafka_script()  # the checkout's deploy/kafka/ or the installed package's copy
TOPICS_TIMEOUT_S = 10.0  # `evi kafka topics` gives an absent broker this long

# subcommand -> (module, function, help); each function takes argv and returns an exit code.
SERVICES: dict[str, tuple[str, str, str]] = {
    "produce": ("producers.__main__", "main", "capture sources and publish frames"),
    "sample": ("producers.sample", "main", "write the generated sample clip to a video file"),
    "process": ("processors.__main__", "main", "run a processor worker for one kind"),
    "gateway": ("gateway.__main__", "main", "run the REST/websocket gateway and dashboard"),
    "models": ("processors.models", "main", "fetch, list or quantize (INT8) models"),
    "lag": ("evi.scaleplan", "main", "consumer lag per kind and the replicas KEDA would ask for"),
    "record": ("producers.record", "main", "save a window of a stream's frames to a clip file"),
    "replay": ("producers.replay", "main", "publish a clip file or a topic window again"),
    "dev": ("evi.dev", "main", "run the whole pipeline here: Kafka, producer, processor, gateway"),
}


def kafka_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="evi kafka", description="the local single-node broker")
    p.add_argument("action", choices=["fetch", "start", "stop", "status", "reset", "topics"])
    p.add_argument("--kind", action="append", dest="kinds", help="kinds whose topics to create")
    a = p.parse_args(argv)
    if a.action != "topics":
        return subprocess.call(["bash", str(KAFKA_SCRIPT), a.action], env=kafka_env())
    from confluent_kafka import KafkaException

    from evi.kafka import ensure_topics, explain
    from evi.topics import Topics

    try:
        s = load(ServiceSettings)
        specs = Topics(s.topics).specs(a.kinds or ["face"])
    except ConfigError as e:
        die_on_config_error(e)
    started = time.monotonic()
    try:
        created = ensure_topics(s.kafka, specs, timeout=TOPICS_TIMEOUT_S)
    except KafkaException as e:
        print(f"evi kafka topics: {explain(s.kafka, e, round(time.monotonic() - started))}",
              file=sys.stderr)
        return 1
    for spec in specs:
        state = "created" if spec.name in created else "exists"
        print(f"{spec.name}\t{spec.partitions} partitions\t{state}")
    return 0


def kafka_env() -> dict[str, str]:
    """kafka.sh's environment: its cache is evi's (an installed script cannot find `.cache`)."""
    try:
        cache = load(ServiceSettings).cache_dir
    except ConfigError as e:
        die_on_config_error(e)
    return {**os.environ, "EVI_CACHE_DIR": str(cache)}


def usage(commands: dict[str, tuple[str, str, str]]) -> str:
    width = max(map(len, commands))
    lines = [f"  {name:<{width}}  {h}" for name, (_, _, h) in sorted(commands.items())]
    return ("usage: evi <command> [options]\n       evi --version\n\ncommands:\n"
            + "\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    commands: dict[str, tuple[str, str, str]] = dict(SERVICES)
    commands["kafka"] = ("evi.cli", "kafka_main", "start/stop the local broker, create topics")
    if args and args[0] in ("-h", "--help"):
        print(usage(commands))
        return 0
    if args and args[0] in ("-V", "--version"):
        from evi import installed_version

        print(f"evi {installed_version()}")
        return 0
    if not args:  # asked nothing: the usage, as an error (argparse's habit)
        print(usage(commands), file=sys.stderr)
        return 2
    if args[0] not in commands:
        print(f"evi: unknown command {args[0]!r} (see evi --help)", file=sys.stderr)
        return 2
    require(args[0])  # its extra (evi[processor], evi[producer]) installed, or one line
    module, func, _ = commands[args[0]]
    entry: Callable[[list[str]], int] = getattr(importlib.import_module(module), func)
    return entry(args[1:])


if __name__ == "__main__":
    sys.exit(main())
