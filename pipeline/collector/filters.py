"""Filters: callables from a batch of events to a batch of events, chained per sink."""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from pipeline.wire.events import KINDS, Event, Kind

__all__ = [
    "ENDS",
    "METRIC_KINDS",
    "STEP_KEYS",
    "DropKeys",
    "EveryN",
    "EveryS",
    "Filter",
    "KeepKeys",
    "KeepKinds",
    "LogGate",
    "NameMatch",
    "NoneFilter",
    "PerTrial",
    "Stateful",
    "StepKept",
    "apply_filters",
    "filter_states",
    "is_number",
    "glob_match",
    "map_leaves",
    "matching_leaves",
    "restore_filters",
    "with_leaves",
    "metrics_of",
    "stream_of",
    "with_metrics",
]

Filter = Callable[[list[Event]], list[Event]]

RESULT = Kind.RESULT.value
LOG = Kind.LOG.value
METRIC_KINDS = frozenset({RESULT, LOG})
"""The kinds that carry metrics, the only ones filters change: a driver's result (the payload)
and a worker's ``pipeline.log`` call (the payload's ``values``); see ``metrics_of``."""
ENDS = frozenset({Kind.TRIAL_COMPLETE.value, Kind.TRIAL_ERROR.value})
EXPERIMENT_END = Kind.EXPERIMENT_END.value
STEP_KEYS = ("timesteps_total", "training_iteration")
"""What the TensorBoard and Aim sinks take a result's step from."""
MAX_CACHED_NAMES = 65_536
MAX_CACHED_SHAPES = 4_096


@runtime_checkable
class Stateful(Protocol):
    """A filter whose output depends on what it saw: its state commits with the sink's ledger."""

    def state(self) -> Any:
        """A JSON-able copy of the state, taken after a batch."""

    def restore(self, state: Any) -> None:
        """Take back a state ``state`` returned."""


def apply_filters(filters: Sequence[Filter], events: list[Event]) -> list[Event]:
    """Run ``events`` through ``filters`` in order."""
    for f in filters:
        events = f(events)
    return events


def filter_states(filters: Sequence[Filter]) -> list[Any] | None:
    """``[name, state]`` of each filter (state None when it keeps none); None when no filter has any."""
    if not any(isinstance(f, Stateful) for f in filters):
        return None
    return [[str(f), f.state() if isinstance(f, Stateful) else None] for f in filters]


def restore_filters(filters: Sequence[Filter], states: list[Any] | None) -> bool:
    """Give each filter its state from ``filter_states``; False (nothing restored) if the chain differs."""
    if states is None or [name for name, _ in states] != [str(f) for f in filters]:
        return False
    for f, (_, state) in zip(filters, states):
        if isinstance(f, Stateful):
            f.restore(state)
    return True


_NUMBER_TYPES = frozenset({int, float, np.float64, np.float32, np.int64, np.int32})


def is_number(value: object) -> bool:
    """An int or float (Python or numpy), not a bool."""
    kind = type(value)
    return kind in _NUMBER_TYPES or (
        kind is not bool and isinstance(value, (int, float, np.integer, np.floating)))


def _is_nan(value: object) -> bool:
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


def _join(prefix: str, key: Any) -> str:
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
            name = _join(prefix, key)
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
            sub = map_leaves(value, fn, _join(prefix, key))
            if sub or not value:
                out[key] = sub
        else:
            out.update(fn(key, _join(prefix, key), value))
    return out


KEEP, SELECT = object(), object()


class _KeySelection:
    """Keeps (or drops) the leaves whose flat name, or a parent dict's, matches a pattern."""

    verb = ""

    def __init__(self, patterns: Iterable[str]) -> None:
        self.matches = glob_match(self.verb, patterns)
        self.keeps_matches = self.verb == "keep"

    def __str__(self) -> str:
        return f"{self.verb}={self.matches.text}"

    def __call__(self, events: list[Event]) -> list[Event]:
        return [self._select(e, metrics) if (metrics := metrics_of(e)) is not None else e for e in events]

    def _select(self, event: Event, metrics: dict[Any, Any]) -> Event:
        items = self._tree(metrics, "")
        steps = {k: metrics[k] for k in STEP_KEYS if k in metrics and k not in items}
        if steps and event.kind == RESULT:
            return event._replace(payload=StepKept(items, {**getattr(metrics, "steps", {}), **steps}))
        return with_metrics(event, items)

    def _tree(self, tree: dict[Any, Any], prefix: str) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        for key, name, action in self.matches.plan(tree, prefix, self._plan):
            if action is KEEP:
                out[key] = tree[key]
            else:
                sub = self._tree(tree[key], name)
                if sub:
                    out[key] = sub
        return out

    def _plan(self, tree: dict[Any, Any], prefix: str) -> list[tuple[Any, str, object]]:
        """(key, flat name, KEEP or SELECT) of what goes on from a dict of this shape."""
        plan: list[tuple[Any, str, object]] = []
        for key, value in tree.items():
            name = _join(prefix, key)
            if self.matches(name):
                if self.keeps_matches:
                    plan.append((key, name, KEEP))
            elif isinstance(value, dict) and value:
                plan.append((key, name, SELECT))
            elif not self.keeps_matches:
                plan.append((key, name, KEEP))
        return plan


class KeepKeys(_KeySelection):
    """Keeps only the result keys matching a glob (``loss``, ``nested/*``); the step still decides."""

    verb = "keep"


class DropKeys(_KeySelection):
    """Removes the result keys matching a glob (``config``, ``hist_*``); the step still decides."""

    verb = "drop"


class NoneFilter:
    """Removes result values that are None or NaN (Acme's ``NoneFilter``, NaN as Tune users expect)."""

    def __str__(self) -> str:
        return "none"

    def __call__(self, events: list[Event]) -> list[Event]:
        return [self._clean(e, metrics) if (metrics := metrics_of(e)) is not None else e for e in events]

    def _clean(self, event: Event, metrics: dict[Any, Any]) -> Event:
        if not _has_none(metrics):
            return event
        return with_metrics(event, map_leaves(metrics, _unless_none))


def _has_none(tree: dict[Any, Any]) -> bool:
    for value in tree.values():
        if value is None:
            return True
        kind = type(value)
        if kind is float:
            if value != value:
                return True
        elif kind is dict:
            if _has_none(value):
                return True
        elif isinstance(value, np.floating) and math.isnan(value):
            return True
    return False


def _unless_none(key: Any, name: str, value: Any) -> list[tuple[Any, Any]]:
    return [] if value is None or _is_nan(value) else [(key, value)]


class KeepKinds:
    """Keeps only events of the given kinds."""

    def __init__(self, kinds: Iterable[str]) -> None:
        self.kinds = frozenset(kinds)
        unknown = self.kinds - set(KINDS)
        if unknown:
            raise ValueError(f"unknown event kinds {sorted(unknown)!r}; choose from {sorted(KINDS)}")

    def __str__(self) -> str:
        return f"kinds={','.join(sorted(self.kinds))}"

    def __call__(self, events: list[Event]) -> list[Event]:
        return [e for e in events if e.kind in self.kinds]


class PerTrial:
    """State kept per stream (``stream_of``: a trial's results, a worker rank's logs), JSON-able,
    forgotten when the trial or its experiment ends."""

    def __init__(self) -> None:
        self.trials: dict[str, Any] = {}

    def __call__(self, events: list[Event]) -> list[Event]:
        out: list[Event] = []
        for event in events:
            metrics = metrics_of(event)
            if metrics is not None:
                out.extend(self.result(stream_of(event), event, metrics))
                continue
            if event.kind in ENDS:
                trial = f"{event.experiment}/{event.trial}"
                for key in [k for k in self.trials if k == trial or k.startswith(trial + "/")]:
                    out.extend(self.end(key))
            elif event.kind == EXPERIMENT_END:
                for key in [k for k in self.trials if k.startswith(event.experiment + "/")]:
                    out.extend(self.end(key))
            out.append(event)
        return out

    def result(self, stream: str, event: Event, metrics: dict[Any, Any]) -> list[Event]:
        """What one event of ``stream`` carrying ``metrics`` becomes."""
        raise NotImplementedError

    def end(self, stream: str) -> list[Event]:
        """Forget ``stream``; what to write before its trial's end."""
        self.trials.pop(stream, None)
        return []

    def state(self) -> Any:
        return dict(self.trials)

    def restore(self, state: Any) -> None:
        self.trials = dict(state)


class EveryS(PerTrial):
    """At most one result per trial per ``seconds`` of event time (Acme's ``TimeFilter``), the first kept."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        if not (isinstance(seconds, (int, float)) and 0 < seconds < math.inf):
            raise ValueError(f"every_s must be a number of seconds > 0, got {seconds!r}")
        self.seconds = seconds

    def __str__(self) -> str:
        return f"every_s={self.seconds:g}"

    def result(self, stream: str, event: Event, metrics: dict[Any, Any]) -> list[Event]:
        last = self.trials.get(stream)
        if last is not None and event.ts - last < self.seconds:
            return []
        self.trials[stream] = event.ts
        return [event]


class _Gate(PerTrial):
    """Keeps a trial's ``t``-th result (from 0) when ``opens(t)`` (Acme's ``GatedFilter``)."""

    def __init__(self, what: str, n: int) -> None:
        super().__init__()
        if not (isinstance(n, int) and not isinstance(n, bool) and n >= self.least):
            raise ValueError(f"{what} must be a whole number >= {self.least}, got {n!r}")
        self.n = n

    least = 1

    def opens(self, t: int) -> bool:
        raise NotImplementedError

    def result(self, stream: str, event: Event, metrics: dict[Any, Any]) -> list[Event]:
        t = self.trials.get(stream, 0)
        self.trials[stream] = t + 1
        return [event] if self.opens(t) else []


class EveryN(_Gate):
    """A trial's results 0, n, 2n, ... (Acme's ``GatedFilter.periodic``)."""

    def __init__(self, n: int) -> None:
        super().__init__("every_n", n)

    def __str__(self) -> str:
        return f"every_n={self.n}"

    def opens(self, t: int) -> bool:
        return t % self.n == 0


class LogGate(_Gate):
    """A trial's results 0..n-1, then every n-th up to n**2, every n**2-th up to n**3, ...

    Acme's ``GatedFilter.logarithmic`` (with n=10: 0, 1, ..., 9, 10, 20, ..., 90, 100,
    200, ...), in exact integer arithmetic.
    """

    least = 2

    def __init__(self, n: int) -> None:
        super().__init__("log", n)

    def __str__(self) -> str:
        return f"log={self.n}"

    def opens(self, t: int) -> bool:
        power = 1
        while power * self.n <= t:
            power *= self.n
        return t % power == 0
