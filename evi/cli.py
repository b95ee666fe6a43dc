"""The `evi` command: one Typer tree. Each service's commands live in its own module (a Typer app
named in SERVICES) and are imported only when that command runs, so this shared core never
imports a service, `evi --help` stays fast, and a command whose optional extra is not installed
does not stop the others. evi/command.py adds the common flags to every command."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Annotated, Any

import typer
from typer._click.core import Command, Context  # Typer 0.29 vendors its own Click
from typer._click.exceptions import ClickException, UsageError
from typer.core import TyperCommand, TyperGroup

from evi.command import command, invoke, printed_settings, typer_app
from evi.errors import ConfigError
from evi.extras import require
from evi.paths import kafka_script
from evi.settings import ServiceSettings, die_on_config_error, load

KAFKA_SCRIPT = kafka_script()  # the checkout's deploy/kafka/ or the installed package's copy
TOPICS_TIMEOUT_S = 10.0  # `evi kafka topics` gives an absent broker this long

# command -> (module, Typer app in it, one-line help)
SERVICES: dict[str, tuple[str, str, str]] = {
    "produce": ("producers.__main__", "cli", "capture sources and publish frames"),
    "sample": ("producers.sample", "cli", "write the generated sample clip to a video file"),
    "process": ("processors.__main__", "cli", "run a processor worker for one kind"),
    "gateway": ("gateway.__main__", "cli", "run the REST/websocket gateway and dashboard"),
    "models": ("processors.model_commands", "cli", "fetch, list or quantize (INT8) models"),
    "lag": ("evi.scaleplan", "cli", "consumer lag per kind and the replicas KEDA would ask for"),
    "record": ("producers.record", "cli", "save a window of a stream's frames to a clip file"),
    "replay": ("producers.replay", "cli", "publish a clip file or a topic window again"),
    "dev": ("evi.dev", "cli", "run the whole pipeline here: Kafka, producer, processor, gateway"),
    "kafka": ("evi.cli", "kafka_cli", "start/stop the local broker, create topics"),
}


class LazyGroup(TyperGroup):
    """Lists SERVICES from their help lines alone; imports a command's module only to run it
    (or to complete its flags)."""

    def list_commands(self, ctx: Context) -> list[str]:
        return sorted(SERVICES)

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        entry = SERVICES.get(cmd_name)
        return TyperCommand(name=cmd_name, help=entry[2]) if entry else None

    def resolve_command(
        self, ctx: Context, args: list[str]
    ) -> tuple[str | None, Command | None, list[str]]:
        name = args[0]
        if name not in SERVICES:
            if ctx.resilient_parsing:  # completing: nothing to complete after a wrong name
                return None, None, args[1:]
            raise UsageError(f"unknown command {name!r}", ctx)
        return name, load_command(name, completing=ctx.resilient_parsing), args[1:]


def load_command(name: str, *, completing: bool = False) -> Command:
    module, attr, _ = SERVICES[name]
    if not completing:
        require(name)  # its extra (evi[processor], evi[producer]) installed, or one line
    try:
        app: typer.Typer = getattr(importlib.import_module(module), attr)
    except ModuleNotFoundError as e:  # an optional extra that is not installed
        raise ClickException(f"needs {e.name!r}, which is not installed") from None
    return command(app)


def show_version(value: bool) -> None:
    if value:
        from evi import installed_version

        print(f"evi {installed_version()}")
        raise typer.Exit()


app = typer.Typer(
    name="evi", cls=LazyGroup, add_completion=True, rich_markup_mode=None, no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Elastic video inference on Kafka. `evi COMMAND --help` for a command's flags.",
)


@app.callback()
def root(
    _version: Annotated[bool, typer.Option(
        "-V", "--version", callback=show_version, is_eager=True,
        help="print evi's version and exit",
    )] = False,
) -> None:
    """Asked nothing (bare `evi`): the help on stderr and exit 2, as argparse did."""


kafka_cli = typer_app(help="the local single-node broker (deploy/kafka/kafka.sh)",
                      no_args_is_help=True)


def _script(action: str) -> int:
    if printed_settings(load_or_die(ServiceSettings)):
        return 0
    return subprocess.call(["bash", str(KAFKA_SCRIPT), action], env=kafka_env())


def load_or_die(cls: type[ServiceSettings]) -> ServiceSettings:
    try:
        return load(cls)
    except ConfigError as e:
        die_on_config_error(e)
        raise  # unreachable: die_on_config_error exits


@kafka_cli.command()
def fetch() -> int:
    """download the Kafka jars (Maven) into the cache"""
    return _script("fetch")


@kafka_cli.command()
def start() -> int:
    """start the broker on 127.0.0.1:9092 (idempotent)"""
    return _script("start")


@kafka_cli.command()
def stop() -> int:
    """stop the broker"""
    return _script("stop")


@kafka_cli.command()
def status() -> int:
    """say whether the broker runs"""
    return _script("status")


@kafka_cli.command()
def reset() -> int:
    """stop the broker and delete its data"""
    return _script("reset")


@kafka_cli.command()
def topics(
    kinds: Annotated[list[str] | None, typer.Option(
        "--kind", help="kinds whose topics to create (repeatable; default face)")] = None,
) -> int:
    """create the kinds' topics (frames, results, dead letters) where missing"""
    from confluent_kafka import KafkaException

    from evi.kafka import ensure_topics, explain
    from evi.topics import Topics

    try:
        s = load(ServiceSettings)
        specs = Topics(s.topics).specs(kinds or ["face"])
    except ConfigError as e:
        die_on_config_error(e)
    if printed_settings(s):
        return 0
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
    return {**os.environ, "EVI_CACHE_DIR": str(load_or_die(ServiceSettings).cache_dir)}


def main(argv: Sequence[str] | None = None) -> int:
    root_cmd: Any = typer.main.get_command(app)
    return invoke(root_cmd, argv, "evi")


if __name__ == "__main__":
    sys.exit(main())
