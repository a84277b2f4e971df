"""The sinks a collector can fan out to, found by name through entry points; each imported when asked for."""

from __future__ import annotations

import functools
import importlib
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

from sinks.base import Sink, TrialRef

__all__ = ["GROUP", "Sink", "TrialRef", "make_sink", "register_sink", "sink_class", "sink_names",
           "unregister_sink"]

GROUP = "tunebus.sinks"
"""The entry-point group of sinks. A package adds a sink by declaring one::

    [project.entry-points."tunebus.sinks"]
    mysink = "mypackage.mysink:MySink"   # a subclass of sinks.base.Sink

Its name is then accepted by ``--sinks``, its declared ``options`` become flags
(``--mysink-<option>``) and ``[sinks.mysink]`` TOML keys. ``register_sink`` adds
one for this process only (benchmarks, tests)."""

_REGISTERED: dict[str, str] = {}
"""Sinks added with ``register_sink``: name -> ``module:Class``."""


@functools.cache
def _entry_points() -> dict[str, EntryPoint]:
    found: dict[str, EntryPoint] = {}
    for point in entry_points(group=GROUP):
        found.setdefault(point.name, point)  # the first on sys.path wins, as for imports
    return found


def register_sink(name: str, target: str) -> None:
    """Make ``target`` (``"module:Class"``) the sink called ``name`` in this process only."""
    if ":" not in target:
        raise ValueError(f"target must look like 'module:Class', got {target!r}")
    _REGISTERED[name] = target


def unregister_sink(name: str) -> None:
    """Forget a sink ``register_sink`` added (entry points stay); nothing if there is none."""
    _REGISTERED.pop(name, None)


def sink_names() -> tuple[str, ...]:
    """Every registered sink's name, sorted."""
    return tuple(sorted({*_entry_points(), *_REGISTERED}))


@functools.cache
def _load(name: str, target: str) -> type[Sink]:
    module, _, attr = target.partition(":")
    try:
        found = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"sink {name!r} ({target}) cannot be loaded: {exc}") from exc
    if not (isinstance(found, type) and issubclass(found, Sink)):
        raise ValueError(f"sink {name!r} ({target}) is not a subclass of sinks.base.Sink")
    return found


def sink_class(name: str) -> type[Sink]:
    """The class of the sink called ``name``; ValueError naming the known ones if there is none."""
    target = _REGISTERED.get(name)
    if target is None:
        point = _entry_points().get(name)
        if point is None:
            raise ValueError(f"unknown sink {name!r}; choose from {', '.join(sink_names())}")
        target = point.value
    return _load(name, target)


def make_sink(name: str, out: Path, **options: Any) -> Sink:
    """Build the sink called ``name`` writing under ``out``."""
    return sink_class(name)(out, **options)  # type: ignore[call-arg]  # the contract: (out, **options)
