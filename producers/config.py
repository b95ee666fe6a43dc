"""Streams from a config file (YAML or TOML) and from CLI flags, validated one stream at a time
so one bad entry is reported (naming the stream) while the others still run.

    defaults: {kinds: [face], fps: 10}        # optional, applied under every stream
    streams:
      - {id: lobby, source: videos/lobby.mp4, loop: true}
      - {id: door, source: "rtsp://cam-door/stream1", kinds: [face, person], width: 1280}
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from evi.errors import ConfigError
from producers.settings import StreamConfig

STREAM_FIELDS = set(StreamConfig.model_fields)


def read_file(path: Path) -> dict[str, Any]:
    """The mapping in a .yaml/.yml/.toml file; ConfigError naming the file otherwise."""
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"cannot read config {path}: {e.strerror}") from None
    try:
        doc = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"{path} is not valid {path.suffix[1:].upper()}: {first}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: expected a mapping with a 'streams' list at the top")
    unknown = set(doc) - {"streams", "defaults"}
    if unknown:
        raise ConfigError(f"{path}: unknown top-level key(s) {sorted(unknown)}: use 'streams'"
                          " and 'defaults'")
    streams = doc.get("streams")
    if not isinstance(streams, list) or not streams:
        raise ConfigError(f"{path}: 'streams' must be a non-empty list of streams")
    defaults = doc.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise ConfigError(f"{path}: 'defaults' must be a mapping")
    return {"streams": streams, "defaults": defaults}


def _label(i: int, entry: Any) -> str:
    if isinstance(entry, Mapping) and entry.get("id"):
        return f"stream {entry['id']}"
    if isinstance(entry, Mapping) and entry.get("source"):
        return f"stream #{i + 1} ({entry['source']})"
    return f"stream #{i + 1}"


def build_streams(
    entries: list[Any], defaults: Mapping[str, Any], overrides: Mapping[str, Any], where: str
) -> tuple[list[StreamConfig], list[str]]:
    """Validate each entry over defaults, under overrides; return (good streams, error lines)."""
    good: list[StreamConfig] = []
    errors: list[str] = []
    for i, entry in enumerate(entries):
        label = _label(i, entry)
        if not isinstance(entry, Mapping):
            errors.append(f"{label} {where}: expected a mapping with at least 'source'")
            continue
        try:
            good.append(StreamConfig(**(dict(defaults) | dict(entry) | dict(overrides))))
        except ValidationError as e:
            for err in e.errors():
                loc = ".".join(str(p) for p in err["loc"]) or "stream"
                msg = err["msg"].removeprefix("Value error, ")
                errors.append(f"{label}: {loc}: {msg} (fix it {where})")
    ids = [s.id for s in good]
    for dup in sorted({x for x in ids if ids.count(x) > 1}):
        errors.append(f"stream {dup}: id used twice {where}: give each stream its own 'id'")
    good = [s for s in good if ids.count(s.id) == 1]
    return good, errors
