"""What filters see of an event: its metrics, their flat names (``nested/a``), matched and rebuilt."""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from pipeline.wire.events import Event, Kind

__all__ = [
    "LOG",
    "RESULT",
    "STEP_KEYS",
    "Leaf",
    "NameMatch",
    "StepKept",
    "flat_name",
    "glob_match",
    "is_nan",
    "is_number",
    "map_leaves",
    "matching_leaves",
    "metrics_of",
    "stream_of",
    "with_leaves",
    "with_metrics",
]

RESULT = Kind.RESULT.value
LOG = Kind.LOG.value
STEP_KEYS = ("timesteps_total", "training_iteration")
"""What the TensorBoard and Aim sinks take a result's step from."""
MAX_CACHED_NAMES = 65_536
MAX_CACHED_SHAPES = 4_096


_NUMBER_TYPES = frozenset({int, float, np.float64, np.float32, np.int64, np.int32})


def is_number(value: object) -> bool:
    """An int or float (Python or numpy), not a bool."""
    kind = type(value)
    return kind in _NUMBER_TYPES or (
        kind is not bool and isinstance(value, (int, float, np.integer, np.floating)))


def is_nan(value: object) -> bool:
    """A float (Python or numpy) that is NaN."""
    return isinstance(value, (float, np.floating)) and math.isnan(value)


class StepKept(dict[Any, Any]):
    """A result whose step keys a filter left out: iterating skips them, asking by name finds them.

    So a sink's ``result.get("training_iteration")`` still decides the step while the
    key itself is not written as a value or a column.
    """

    __slots__ = ("steps",)

    def __init__(self, items: dict[Any, Any], steps: dict[str, Any]) -> None:
        super().__init__(items)
        self.steps = steps

    def __missing__(self, key: Any) -> Any:
        return self.steps[key]

    def get(self, key: Any, default: Any = None) -> Any:
        return dict.get(self, key, self.steps.get(key, default))


def metrics_of(event: Event) -> dict[Any, Any] | None:
    """The metrics ``event`` carries: a result's payload, a log's ``values``; None for other kinds."""
    if event.kind == RESULT:
        return event.payload
    if event.kind == LOG:
        values = event.payload.get("values")
        return values if isinstance(values, dict) else None
    return None


def with_metrics(event: Event, items: dict[Any, Any]) -> Event:
    """``event`` carrying the metrics ``items``, keeping the step keys its metrics had left out."""
    if event.kind == LOG:
        return event._replace(payload={**event.payload, "values": items})
    steps = getattr(event.payload, "steps", None)
    if steps:
        items = StepKept(items, {k: v for k, v in steps.items() if k not in items})
    return event._replace(payload=items)


def stream_of(event: Event) -> str:
    """Whose metrics these are, for per-stream state: ``experiment/trial`` for results,
    ``experiment/trial/rank`` for a worker's logs (names hold no ``/``)."""
    if event.kind == LOG:
        return f"{event.experiment}/{event.trial}/{event.payload.get('rank')}"
    return f"{event.experiment}/{event.trial}"


def flat_name(prefix: str, key: Any) -> str:
    """``key``'s flat name under ``prefix``, as Tune's ``flatten_dict`` joins it."""
    return f"{prefix}/{key}" if prefix else (key if type(key) is str else str(key))


class NameMatch:
    """A test of flat result names (a glob, a regex), each name's answer cached.

    ``plans`` is where the filter using it caches what it does with a dict of a given
    shape (its prefix, keys and value types): results of one trial mostly share shapes.
    """

    def __init__(self, test: Callable[[str], object], text: str) -> None:
        self.test = test
        self.text = text
        self.cache: dict[str, bool] = {}
        self.plans: dict[tuple[Any, ...], Any] = {}

    def __call__(self, name: str) -> bool:
        hit = self.cache.get(name)
        if hit is None:
            if len(self.cache) >= MAX_CACHED_NAMES:
                self.cache.clear()
            hit = self.cache[name] = self.test(name) is not None
        return hit

    def plan(self, tree: dict[Any, Any], prefix: str, make: Callable[[dict[Any, Any], str], Any]) -> Any:
        """``make(tree, prefix)``, made once per shape of ``tree``."""
        shape = (prefix, *tree, *map(type, tree.values()))  # keys, then their values' types
        plan = self.plans.get(shape)
        if plan is None:
            if len(self.plans) >= MAX_CACHED_SHAPES:
                self.plans.clear()
            plan = self.plans[shape] = make(tree, prefix)
        return plan


def glob_match(what: str, patterns: Iterable[str]) -> NameMatch:
    """Flat names matching any of the glob ``patterns``; a ValueError that quotes them if there are none."""
    listed = [patterns] if isinstance(patterns, str) else list(patterns)
    if not listed or not all(isinstance(p, str) and p for p in listed):
        raise ValueError(f"{what} needs non-empty glob patterns, got {patterns!r}")
    return NameMatch(re.compile("|".join(fnmatch.translate(p) for p in listed)).match, ",".join(listed))


Leaf = tuple[tuple[Any, ...], Any, str, Any]
"""Where a leaf is: the keys of the dicts above it, its key, its flat name, its value."""


def matching_leaves(tree: dict[Any, Any], match: NameMatch, prefix: str = "",
                    path: tuple[Any, ...] = ()) -> list[Leaf]:
    """The leaves of ``tree`` whose flat name ``match`` accepts, in order."""
    found: list[Leaf] = []
    for key, name, is_dict in match.plan(tree, prefix, _leaves_plan(match)):
        if is_dict:
            found += matching_leaves(tree[key], match, name, (*path, key))
        else:
            found.append((path, key, name, tree[key]))
    return found


def _leaves_plan(match: NameMatch) -> Callable[[dict[Any, Any], str], list[tuple[Any, str, bool]]]:
    def make(tree: dict[Any, Any], prefix: str) -> list[tuple[Any, str, bool]]:
        """(key, flat name, is a dict) of each sub-dict and each matching leaf."""
        plan = []
        for key, value in tree.items():
            name = flat_name(prefix, key)
            if isinstance(value, dict) or match(name):
                plan.append((key, name, isinstance(value, dict)))
        return plan
    return make


def with_leaves(tree: dict[Any, Any], added: dict[tuple[Any, ...], dict[Any, Any]]) -> dict[Any, Any]:
    """A copy of ``tree`` with ``added[path]``'s items set in (appended to) the dict at ``path``.

    Only the dicts on those paths are copied; the rest is shared with ``tree``.
    """
    top = dict(tree)
    copied: dict[tuple[Any, ...], dict[Any, Any]] = {(): top}
    for path, items in added.items():
        _copied(top, path, copied).update(items)
    return top


def _copied(top: dict[Any, Any], path: tuple[Any, ...], copied: dict[tuple[Any, ...], dict[Any, Any]]
            ) -> dict[Any, Any]:
    node = copied.get(path)
    if node is None:
        parent = _copied(top, path[:-1], copied)
        node = copied[path] = parent[path[-1]] = dict(parent[path[-1]])
    return node


def map_leaves(tree: dict[Any, Any], fn: Callable[[Any, str, Any], Iterable[tuple[Any, Any]]],
               prefix: str = "") -> dict[Any, Any]:
    """``tree`` rebuilt with each leaf replaced by the items ``fn(key, flat name, value)`` gives.

    Flat names join nested keys with ``/``, as Tune flattens results; a dict that ``fn``
    empties is left out.
    """
    out: dict[Any, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            sub = map_leaves(value, fn, flat_name(prefix, key))
            if sub or not value:
                out[key] = sub
        else:
            out.update(fn(key, flat_name(prefix, key), value))
    return out
