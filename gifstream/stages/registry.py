"""A small registry of stage factories, so new stages plug in by name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..engine import ConfigError, Stage

StageFactory = Callable[..., Stage]
_FACTORIES: dict[str, StageFactory] = {}


def register(name: str) -> Callable[[StageFactory], StageFactory]:
    """Class decorator (or function decorator) adding a stage factory under ``name``."""

    def add(factory: StageFactory) -> StageFactory:
        if name in _FACTORIES:
            raise ValueError(f"stage {name!r} registered twice")
        _FACTORIES[name] = factory
        return factory

    return add


def create(name: str, **options: Any) -> Stage:
    """Build the stage registered as ``name`` with its options."""
    try:
        factory = _FACTORIES[name]
    except KeyError:
        raise ConfigError(f"unknown stage {name!r}; known: {', '.join(sorted(_FACTORIES))}") from None
    return factory(**options)


def available() -> list[str]:
    return sorted(_FACTORIES)
