"""Just enough of the Dockerfile grammar for deploy/docker/Dockerfile: line continuations,
comments, stages, ARG defaults in FROM, ENV (key=value form), exec-form JSON arguments."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Instruction:
    op: str
    args: str
    flags: dict[str, str] = field(default_factory=dict)

    def words(self) -> list[str]:
        """Exec form (a JSON list) as is, shell form split like a shell would."""
        if self.args.startswith("["):
            words: list[str] = json.loads(self.args)
            return words
        return shlex.split(self.args)


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, op: str) -> list[Instruction]:
        return [i for i in self.instructions if i.op == op]

    def env(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for i in self.all("ENV"):
            for word in shlex.split(i.args):
                key, _, value = word.partition("=")
                out[key] = re.sub(r"\$\{?(\w+)\}?", lambda m: out.get(m[1], m[0]), value)
        return out


def parse(path: Path) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages, in order."""
    lines: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or not stripped:
            continue  # comments and blank lines, also inside a continuation
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    assert not pending, "a continuation runs off the end of the file"
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in lines:
        op, _, rest = line.partition(" ")
        op = op.upper()
        flags: dict[str, str] = {}
        while rest.startswith("--"):
            flag, _, rest = rest.partition(" ")
            key, _, value = flag[2:].partition("=")
            flags[key] = value
        instruction = Instruction(op, rest.strip(), flags)
        if op == "FROM":
            words = rest.split()
            base = re.sub(r"\$\{(\w+)\}", lambda m: args[m[1]], words[0])
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else ""
            stages.append(Stage(base, name))
        elif not stages:
            assert op == "ARG", f"only ARG may come before the first FROM, not {op}"
            key, _, value = rest.partition("=")
            args[key.strip()] = value.strip()
        else:
            stages[-1].instructions.append(instruction)
    return args, stages
