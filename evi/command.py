"""What every `evi` command shares: the common flags (defined once, here), running a command's
Typer app from its module's `main(argv)`, one-line usage errors and `--print-settings`.

A service module defines its flags as a Typer app and keeps `main(argv) -> int`, which
`evi/cli.py` and tests call; `run(app, argv, prog)` adds the common flags to each of the app's
commands and hands their values to every settings object the command builds
(evi.settings.given_flags), between init arguments and env.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Literal

import typer
from typer._click.core import Command, Parameter  # Typer 0.29 vendors its own Click
from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError
from typer.core import TyperGroup as Group
from typer.core import TyperOption

from evi.settings import CommonFlags, ServiceSettings, common_flags, given_flags

COMMON_NAMES = ("bootstrap_servers", "topic_prefix", "log_level", "print_settings")
_MARK = "_evi_common_flags"


def _common(
    bootstrap_servers: Annotated[str | None, typer.Option(
        "--bootstrap-servers", metavar="HOST:PORT[,...]",
        help="Kafka bootstrap servers (over EVI_KAFKA__BOOTSTRAP_SERVERS)")] = None,
    topic_prefix: Annotated[str | None, typer.Option(
        "--topic-prefix",
        help="topic name prefix (over EVI_TOPICS__PREFIX; default evi)")] = None,
    log_level: Annotated[Literal["DEBUG", "INFO", "WARNING", "ERROR"] | None, typer.Option(
        "--log-level", case_sensitive=False,
        help="log level (over EVI_LOG_LEVEL; default INFO)")] = None,
    print_settings: Annotated[bool, typer.Option(
        "--print-settings",
        help="print the command's effective settings as JSON (secrets masked) and exit")] = False,
) -> None:
    """Only its signature is used: Typer turns it into the common options."""


def typer_app(**kwargs: Any) -> typer.Typer:
    """A command's Typer app as evi's commands share them: plain (argparse-like) help, -h."""
    return typer.Typer(rich_markup_mode=None, add_completion=False,
                       context_settings={"help_option_names": ["-h", "--help"]}, **kwargs)


def help_text(doc: str) -> str:
    """Click rewraps paragraphs; '\\b' before an indented one (examples) keeps its lines."""
    paragraphs = doc.strip().split("\n\n")
    return "\n\n".join(f"\b\n{p}" if p.startswith("    ") else p for p in paragraphs)


def common_params() -> list[Parameter]:
    """Fresh click options for the common flags (built by Typer from `_common`'s signature)."""
    holder = typer.Typer(add_completion=False)
    holder.command()(_common)
    return list(typer.main.get_command(holder).params)


def _with_flags(callback: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(callback)
    def run(**kwargs: Any) -> Any:
        flags = CommonFlags(**{name: kwargs.pop(name) for name in COMMON_NAMES})
        with given_flags(flags):
            return callback(**kwargs)

    return run


def add_common(cmd: Command) -> Command:
    """The common flags on `cmd` and, for a group, on each of its commands (not the group
    itself: `evi models list --topic-prefix x`, as with every other command)."""
    if getattr(cmd, _MARK, False):
        return cmd
    setattr(cmd, _MARK, True)
    if isinstance(cmd, Group):
        for sub in cmd.commands.values():
            add_common(sub)
    elif cmd.callback is not None:
        cmd.params.extend(common_params())
        cmd.callback = _with_flags(cmd.callback)
        _argparse_metavars(cmd)
    return cmd


def _argparse_metavars(cmd: Command) -> None:
    """`--port PORT` and `--policy {process-all,drop-stale}` as before, not Typer's `<int>`."""
    for p in cmd.params:
        if isinstance(p, TyperOption):
            p.show_default = False  # each help line says its default, as before
        if isinstance(p, TyperOption) and not p.is_flag and p.metavar is None:
            choices = getattr(getattr(p, "type_descriptor", None), "choices", None)
            p.metavar = ("{" + ",".join(map(str, choices)) + "}" if choices
                         else max(p.opts, key=len).lstrip("-").replace("-", "_").upper())


def command(app: typer.Typer) -> Command:
    """The app's click command (a group if it has several commands) with the common flags."""
    return add_common(typer.main.get_command(app))


def usage_line(e: UsageError, prog: str) -> str:
    """Click's usage error as one line: 'evi process: No such option: --x (see evi process
    --help)'."""
    path = e.ctx.command_path if e.ctx is not None else prog
    message = e.format_message().strip().replace("Value error, ", "").rstrip(".")
    return f"{path}: {message} (see {path} --help)"


def invoke(cmd: Command, argv: Sequence[str] | None, prog: str) -> int:
    """Run `cmd` as `prog argv...`: its exit code. A usage error (unknown command or flag, a bad
    value) is one line on stderr and exit 2; --help exits 0."""
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        rv = cmd.main(args=args, prog_name=prog, standalone_mode=False)
    except NoArgsIsHelpError as e:  # a bare group (`evi`, `evi models`): its help, as an error
        print(e.format_message(), file=sys.stderr)
        return e.exit_code
    except UsageError as e:
        print(usage_line(e, prog), file=sys.stderr)
        return e.exit_code
    except ClickException as e:
        print(f"{prog}: {e.format_message()}", file=sys.stderr)
        return e.exit_code
    except typer.Abort:
        return 130
    return rv if isinstance(rv, int) else 0


def run(app: typer.Typer, argv: Sequence[str] | None, prog: str) -> int:
    return invoke(command(app), argv, prog)


def parse(app: typer.Typer, argv: Sequence[str], prog: str) -> argparse.Namespace:
    """The values of a single-command app's flags (common ones too), without running it."""
    cmd = command(app)
    with cmd.make_context(prog, list(argv)) as ctx:
        return argparse.Namespace(**ctx.params)


def common_of(a: argparse.Namespace) -> CommonFlags:
    """The common flags in a `parse` result, else the ones of the running command."""
    if not hasattr(a, "print_settings"):
        return common_flags()
    return CommonFlags(**{name: getattr(a, name) for name in COMMON_NAMES})


def printed_settings(s: ServiceSettings, text: str | None = None) -> bool:
    """With --print-settings: print `text` (default: the settings, secrets masked) and say so,
    and the command returns 0 before doing anything."""
    if not common_flags().print_settings:
        return False
    print(s.printable() if text is None else text, flush=True)
    return True
