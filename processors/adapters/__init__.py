"""Adapters by family: an explicit registry, so an unknown family is an error that names it."""

from __future__ import annotations

from typing import Any

from evi.errors import ConfigError
from processors.adapters.base import Adapter
from processors.adapters.blazeface import BlazeFaceAdapter
from processors.adapters.classify import ClassifyAdapter
from processors.adapters.ssd import SsdAdapter
from processors.adapters.yolo import YoloAdapter
from processors.models import ModelConfigBase

ADAPTERS: dict[str, type[Adapter[Any]]] = {
    BlazeFaceAdapter.family: BlazeFaceAdapter,
    SsdAdapter.family: SsdAdapter,
    YoloAdapter.family: YoloAdapter,
    ClassifyAdapter.family: ClassifyAdapter,
}


def adapter_class(family: str) -> type[Adapter[Any]]:
    try:
        return ADAPTERS[family]
    except KeyError:
        known = ", ".join(sorted(ADAPTERS))
        raise ConfigError(f"model family {family!r} has no adapter (known: {known})") from None


def create_adapter(config: ModelConfigBase) -> Adapter[Any]:
    """The adapter for a model entry, chosen by its `family` field."""
    family = getattr(config, "family", None)
    if not isinstance(family, str):
        raise ConfigError(f"model {config.name}: entry has no family")
    return adapter_class(family)(config)
