"""`evi dev`: the whole pipeline on one machine — Kafka, topics, model, the sample producer, one
processor per kind and the gateway — as child processes, stopped together on Ctrl-C.

A child that dies is started again after a doubling delay, as compose's `restart: unless-stopped`
would, and each change of state is shown (evi/supervise.py); one that keeps dying (5 restarts
within 2 minutes) stops everything with its name and exit code.

`--autoscale` (dev only) stands in for KEDA: per kind it reads the group's lag every polling
interval, asks `evi.scaleplan` for KEDA's replica count, smooths it with the HPA's stabilisation
windows and starts or stops processor workers to match (docs/scaling.md, "Scaling on one
machine").

Policies: the sample streams are paced in real time like cameras, so the processors run
`drop-stale` by default (stay live, count what they skip); `--policy process-all` (or EVI_POLICY)
infers every frame, for replays and recorded sources. `--demo` plays evi/demo.py's load schedule
through the one producer process: streams join, raise their rate and leave."""

from __future__ import annotations

import argparse
import math
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import typer
from confluent_kafka import KafkaException

from evi.cli import KAFKA_SCRIPT
from evi.command import parse, printed_settings, typer_app
from evi.command import run as run_command
from evi.demo import demo_schedule
from evi.errors import ConfigError
from evi.kafka import partitions_of
from evi.scaleplan import LagReader, Plan, ScalerConfig, Stabilizer, read_plan
from evi.settings import (
    REPO_ROOT,
    KafkaSettings,
    ServiceSettings,
    common_flags,
    die_on_config_error,
    load,
)
from evi.supervise import GaveUp, RestartPolicy, StatusReport, Supervisor
from evi.topics import Topics


@dataclass
class Children:
    """`evi` subcommands run as supervised children (evi/supervise.py): one that crashes is
    restarted with backoff, as compose's `restart: unless-stopped` would."""

    log_dir: Path | None = None  # None: children write to our stdout
    env: dict[str, str] | None = None
    quiet: bool = False
    policy: RestartPolicy = field(default_factory=RestartPolicy)
    supervisor: Supervisor = field(init=False)

    def __post_init__(self) -> None:
        self.supervisor = Supervisor(self.policy, cwd=REPO_ROOT, log_dir=self.log_dir,
                                     env=self.env, on_change=None if self.quiet else StatusReport())

    def start(self, name: str, *args: str, env: dict[str, str] | None = None) -> None:
        cmd = [sys.executable, "-m", "evi.cli", *args]
        if not self.quiet:
            print(f"evi dev: starting {name}: {' '.join(cmd[2:])}", flush=True)
        self.supervisor.start(name, cmd, env)

    def retire(self, name: str) -> None:
        """SIGTERM one child (it drains and leaves its group); it no longer counts as running."""
        self.supervisor.retire(name)

    def check(self) -> None:
        """Restart what crashed, when due; GaveUp when a child keeps crashing."""
        self.supervisor.check()

    def exited(self) -> tuple[str, int] | None:
        return self.supervisor.exited()

    def stop(self, timeout: float = 15.0) -> None:
        self.supervisor.stop(timeout)


@dataclass
class Autoscaler:
    """KEDA + HPA for one kind, on one machine: poll, plan, stabilise, start/stop workers."""

    children: Children
    kafka: KafkaSettings
    topics: Topics
    kind: str
    cfg: ScalerConfig
    worker_args: list[str] = field(default_factory=list)  # extra `evi process` flags
    pin_cores: bool = False  # each worker gets `--cpu C --threads 1`, C its least used core
    interval_s: float = 5.0  # KEDA pollingInterval
    cooldown_s: float = 60.0  # KEDA cooldownPeriod: inactive this long before 1 -> 0
    stabilizer: Stabilizer = field(default_factory=lambda: Stabilizer(10.0, 60.0))
    workers: list[str] = field(default_factory=list)
    events: list[tuple[float, str, int]] = field(default_factory=list)  # (time, action, count)
    last_plan: Plan | None = None
    _serial: int = 0
    _next_poll: float = 0.0
    _last_active: float = -math.inf
    _previous: dict[int, int] = field(default_factory=dict)
    _cores: dict[str, int] = field(default_factory=dict)
    _reader: LagReader | None = None  # one consumer + admin client for the scaler's whole life

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def target(self, plan: Plan, now: float) -> int:
        current = len(self.workers)
        if plan.active:
            self._last_active = now
        if current == 0:  # KEDA, not the HPA, wakes a scaled-to-zero target
            return max(self.cfg.min_replicas, 1) if plan.active or self.cfg.min_replicas else 0
        if plan.desired == 0 and now - self._last_active >= self.cooldown_s:
            return 0
        return self.stabilizer(now, max(plan.desired, 1), current)

    def poll(self, now: float | None = None) -> int | None:
        """One KEDA polling cycle when due; returns the new worker count if it changed."""
        now = time.monotonic() if now is None else now
        if now < self._next_poll:
            return None
        self._next_poll = now + self.interval_s
        try:
            if self._reader is None:
                self._reader = LagReader(self.kafka, self.topics.group(self.kind))
            plan = read_plan(self.kafka, self.topics, self.kind, self.cfg, self._previous,
                             current=len(self.workers), reader=self._reader)
        except (KafkaException, KeyError) as e:  # as KEDA: a failed reading changes nothing
            print(f"evi dev: autoscale {self.kind}: no reading: {e}", flush=True)
            return None
        self.last_plan = plan
        want = self.target(plan, now)
        if want == len(self.workers):
            return None
        print(f"evi dev: autoscale {self.kind}: lag={plan.lag} metric={plan.metric} "
              f"members={plan.members} desired={plan.desired} -> {want} workers", flush=True)
        while len(self.workers) < want:
            self._serial += 1
            name = f"processor-{self.kind}-{self._serial}"
            used = [self._cores[w] for w in self.workers]
            self._cores[name] = min(range(os.cpu_count() or 1), key=used.count)
            pin = ["--cpu", str(self._cores[name]), "--threads", "1"]
            self.children.start(name, "process", "--kind", self.kind, "--web-port", "0",
                                *(pin if self.pin_cores else []), *self.worker_args)
            self.workers.append(name)
            self.events.append((now, "start", len(self.workers)))
        while len(self.workers) > want:
            self.children.retire(self.workers.pop())  # newest first
            self.events.append((now, "stop", len(self.workers)))
        return want


TOKEN_FILE = "gateway-token"
MIN_TOKEN_CHARS = 16  # as gateway/settings.py asks


def gateway_token(cache_dir: Path) -> str:
    """The dev gateway's token: EVI_AUTH_TOKEN when set, else `<cache>/gateway-token`, made once
    (mode 0600, secrets.token_urlsafe(32)) and kept, so a dashboard's session survives restarts."""
    given = os.environ.get("EVI_AUTH_TOKEN", "")
    if given:
        return given
    path = cache_dir / TOKEN_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)
            print(f"evi dev: {path} was readable by others: now 0600", flush=True)
        token = path.read_text().strip()
        if len(token) < MIN_TOKEN_CHARS:
            raise ConfigError(f"{path}: not a token ({MIN_TOKEN_CHARS}+ characters): "
                              f"delete it and a new one is made") from None
        return token
    token = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token


def dashboard_link(port: int, token: str) -> str:
    """The dashboard with the token in the fragment: browsers never send a fragment to a server
    (nor proxies log it); the page trades it for a cookie and takes it out of the address."""
    return f"http://127.0.0.1:{port}/#token={token}"


def run(cmd: list[str]) -> None:
    subprocess.run(cmd, check=True, cwd=REPO_ROOT)


def int8_twins(py: list[str], kinds: list[str]) -> list[tuple[str, str]]:
    """(kind, model) of the INT8 twin of each kind's default model, quantised now if it must be
    (`evi models quantize` prints kind, name, source, state, seconds, path, `default` or `-`)."""
    done = subprocess.run([*py, "models", "quantize", *[f"--kind={k}" for k in kinds]],
                          check=True, cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
    rows = [line.split("\t") for line in done.stdout.splitlines()]
    twins = [(f[0], f[1]) for f in rows if len(f) == 7 and f[6] == "default"]
    if missing := sorted(set(kinds) - {k for k, _ in twins}):
        raise ConfigError(f"--int8: no INT8 model of {', '.join(missing)}'s default model "
                          "(an entry with `quantize_from` in the models catalog)")
    return twins


cli = typer_app()


@cli.command(help=(__doc__ or "").split("\n")[0])
def dev(
    kinds: Annotated[list[str] | None, typer.Option(
        "--kind", help="kinds to run (default face)")] = None,
    port: Annotated[int, typer.Option(envvar="EVI_PORT", help="default 8000")] = 8000,
    fps: Annotated[float, typer.Option(help="sample stream frame rate (default 15)")] = 15.0,
    streams: Annotated[int, typer.Option(
        help="number of sample streams, all in one producer process (not with --demo)")] = 1,
    int8: Annotated[bool, typer.Option(
        "--int8", help="also serve each kind's INT8 twin of its default model, in its own group",
    )] = False,
    policy: Annotated[Literal["drop-stale", "process-all"], typer.Option(
        envvar="EVI_POLICY",
        help="processors' real-time policy (default drop-stale: the samples are live)",
    )] = "drop-stale",
    demo: Annotated[bool, typer.Option(
        "--demo", help="vary the load on evi/demo.py's schedule (with --autoscale: 1 -> 2 -> 1)",
    )] = False,
    pace: Annotated[float, typer.Option(help="--demo: play the schedule faster")] = 1.0,
    autoscale: Annotated[bool, typer.Option(
        "--autoscale", help="start/stop processors on lag (a KEDA stand-in; docs/scaling.md); "
                            "the flags below tune it")] = False,
    min_replicas: Annotated[int, typer.Option(help="default 1")] = 1,
    max_replicas: Annotated[int | None, typer.Option(
        help="default: min(partitions, CPU cores)")] = None,
    lag_threshold: Annotated[int, typer.Option(
        help="frames of lag per worker (default 200)")] = 200,
    activation_lag_threshold: Annotated[int, typer.Option(help="default 0")] = 0,
    polling_interval: Annotated[float, typer.Option(
        help="seconds (default 5)")] = 5.0,
    scale_up_window: Annotated[float, typer.Option(
        help="seconds (default 10)")] = 10.0,
    scale_down_window: Annotated[float, typer.Option(
        help="seconds (default 60)")] = 60.0,
    cooldown: Annotated[float, typer.Option(
        help="seconds before 1 -> 0 (default 60)")] = 60.0,
    pin_cores: Annotated[bool, typer.Option(
        "--pin-cores",
        help="one core per worker (--cpu, --threads 1), as a pod's CPU limit would")] = False,
) -> int:
    return develop(argparse.Namespace(**locals()))


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The flags' values without running (tests)."""
    return parse(cli, argv, "evi dev")


def main(argv: list[str] | None = None) -> int:
    return run_command(cli, argv, "evi dev")


def hand_down_common_flags() -> None:
    """The children are `evi` processes: the common flags reach them as the env vars they
    stand for."""
    flags = common_flags()
    env = {"EVI_KAFKA__BOOTSTRAP_SERVERS": flags.bootstrap_servers,
           "EVI_TOPICS__PREFIX": flags.topic_prefix, "EVI_LOG_LEVEL": flags.log_level}
    os.environ.update({k: v for k, v in env.items() if v is not None})


def producer_args(a: argparse.Namespace, kinds: list[str]) -> list[str]:
    """One producer process for every sample stream (one capture thread each): N processes
    cost N Python interpreters, N Kafka clients and N times the broker's connections."""
    if a.demo:
        streams = ["--schedule", "demo", "--pace", str(a.pace)]
    else:
        streams = ["--samples", str(a.streams), "--fps", str(a.fps), "--loop"]
    return ["produce", *streams, *[f"--kind={k}" for k in kinds]]


def autoscalers(a: argparse.Namespace, kinds: list[str], children: Children) -> list[Autoscaler]:
    if a.polling_interval < 0.5 or min(a.scale_up_window, a.scale_down_window, a.cooldown) < 0:
        raise ConfigError("want --polling-interval >= 0.5 and windows, cooldown >= 0 seconds")
    s = load(ServiceSettings)
    topics = Topics(s.topics)
    out = []
    for k in kinds:
        top = a.max_replicas or min(partitions_of(s.kafka, topics.frames(k)), os.cpu_count() or 1)
        cfg = ScalerConfig(
            lag_threshold=a.lag_threshold, activation_lag_threshold=a.activation_lag_threshold,
            offset_reset_policy="earliest", min_replicas=a.min_replicas,
            max_replicas=max(top, a.min_replicas),
        )
        out.append(Autoscaler(
            children, s.kafka, topics, k, cfg, interval_s=a.polling_interval,
            cooldown_s=a.cooldown, stabilizer=Stabilizer(a.scale_up_window, a.scale_down_window),
            pin_cores=a.pin_cores or a.demo, worker_args=["--policy", a.policy],
        ))
    return out


def develop(a: argparse.Namespace) -> int:
    kinds = a.kinds or ["face"]
    py = [sys.executable, "-m", "evi.cli"]
    try:
        # Bad EVI_ settings or kinds: one line now, not one per child after the broker started.
        common = load(ServiceSettings)
        topics = Topics(common.topics)
        for k in kinds:
            topics.frames(k)
        if not 1 <= a.streams <= 256:
            raise ConfigError("want 1 <= --streams <= 256")
        if a.demo and a.streams != 1:
            raise ConfigError("--demo brings its own streams (evi/demo.py): drop --streams")
        schedule = demo_schedule(a.pace) if a.demo else None
        if printed_settings(common):
            return 0
        token = gateway_token(common.cache_dir)
    except ConfigError as e:
        die_on_config_error(e)
    hand_down_common_flags()
    try:
        run(["bash", str(KAFKA_SCRIPT), "start"])
        run([*py, "kafka", "topics", *[f"--kind={k}" for k in kinds]])
        run([*py, "models", "fetch"])
        twins = int8_twins(py, kinds) if a.int8 else []
    except subprocess.CalledProcessError as e:
        return e.returncode  # the step said why, in its one line
    except ConfigError as e:
        die_on_config_error(e)
    children = Children()
    try:
        scalers = autoscalers(a, kinds, children) if a.autoscale else []
    except ConfigError as e:
        die_on_config_error(e)
    stop = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        for k in kinds if not a.autoscale else []:
            children.start(f"processor-{k}", "process", "--kind", k, "--web-port", "0",
                           "--policy", a.policy)
        for k, model in twins:  # a second consumer group on the same frames (group_for)
            children.start(f"processor-{k}-{model}", "process", "--kind", k, "--model", model,
                           "--web-port", "0", "--policy", a.policy)
        for scaler in scalers:
            scaler.poll()
        # The scaling panel's desired line uses the autoscaler's own threshold and ceiling.
        top = max((sc.cfg.max_replicas for sc in scalers), default=a.max_replicas or 12)
        children.start("gateway", "gateway", "--port", str(a.port), *[f"--kind={k}" for k in kinds],
                       env={"EVI_AUTH_TOKEN": token, "EVI_LAG_THRESHOLD": str(a.lag_threshold),
                            "EVI_MAX_REPLICAS": str(top)})
        if schedule is not None:
            print(f"evi dev: load schedule: {schedule.describe()}", flush=True)
        children.start("producer", *producer_args(a, kinds))
        print(f"\nevi dev: dashboard at {dashboard_link(a.port, token)}  (Ctrl-C stops "
              f"everything)\n", flush=True)
        while not stop:
            try:
                children.check()
            except GaveUp as e:
                print(f"evi dev: {e}; stopping everything (its output is above)", flush=True)
                return 1
            for scaler in scalers:
                scaler.poll()
            time.sleep(0.5)
        return 0
    finally:
        for scaler in scalers:
            scaler.close()
        children.stop()
        restarted = [f"{c.name} {c.restarts}x" for c in children.supervisor.children.values()
                     if c.restarts]
        print(f"evi dev: stopped{'; restarted ' + ', '.join(restarted) if restarted else ''}"
              " (Kafka keeps running: `evi kafka stop` stops it)", flush=True)
