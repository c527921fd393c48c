"""The registry of data sources (engine/data/sources/base.py says what a source is). The recipe's `data.dataset`,
the CLI's `datasets` and `download`, and the studio's dataset dialog all read it."""

from __future__ import annotations

from engine.data.sources.base import Archive, DataSource, Loaded
from engine.data.sources.catalogue import SOURCES
from engine.errors import RecipeError

_REGISTRY: dict[str, DataSource] = {}


def register(source: DataSource) -> None:
    if source.name in _REGISTRY:
        raise ValueError(f"data source {source.name!r} is registered twice")
    _REGISTRY[source.name] = source


def source_names() -> list[str]:
    return list(_REGISTRY)


def all_sources() -> list[DataSource]:
    return list(_REGISTRY.values())


def get_source(name: str, field: str = "data.dataset") -> DataSource:
    """The source of that name; an unknown one is refused naming the field and every known name."""
    source = _REGISTRY.get(name)
    if source is None:
        raise RecipeError(field, f"'{name}' is not one of {', '.join(_REGISTRY)}")
    return source


for _source in SOURCES:
    register(_source)

__all__ = ["Archive", "DataSource", "Loaded", "all_sources", "get_source", "register", "source_names"]
