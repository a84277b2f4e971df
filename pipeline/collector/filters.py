"""Filters: callables from a batch of events to a batch of events, chained per sink."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from pipeline.collector.metric_keys import (
    RESULT,
    STEP_KEYS,
    StepKept,
    flat_name,
    glob_match,
    is_nan,
    map_leaves,
    metrics_of,
    stream_of,
    with_metrics,
)
from pipeline.wire.events import KINDS, Event, Kind

__all__ = [
    "ENDS",
    "DropKeys",
    "Filter",
    "KeepKeys",
    "KeepKinds",
    "NoneFilter",
    "PerTrial",
    "Stateful",
    "apply_filters",
    "filter_states",
    "restore_filters",
]

Filter = Callable[[list[Event]], list[Event]]

ENDS = frozenset({Kind.TRIAL_COMPLETE.value, Kind.TRIAL_ERROR.value})
EXPERIMENT_END = Kind.EXPERIMENT_END.value


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
            name = flat_name(prefix, key)
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
    return [] if value is None or is_nan(value) else [(key, value)]


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
