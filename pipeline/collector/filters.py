"""Filters: callables from a batch of events to a batch of events, chained per sink."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from pipeline.wire.events import KINDS, Event, Kind

__all__ = ["DropKeys", "Filter", "KeepKinds", "apply_filters"]

Filter = Callable[[list[Event]], list[Event]]


def apply_filters(filters: Sequence[Filter], events: list[Event]) -> list[Event]:
    """Run ``events`` through ``filters`` in order."""
    for f in filters:
        events = f(events)
    return events


class KeepKinds:
    """Keeps only events of the given kinds."""

    def __init__(self, kinds: Iterable[str]) -> None:
        self.kinds = frozenset(kinds)
        unknown = self.kinds - set(KINDS)
        if unknown:
            raise ValueError(f"unknown event kinds {sorted(unknown)!r}; choose from {sorted(KINDS)}")

    def __call__(self, events: list[Event]) -> list[Event]:
        return [e for e in events if e.kind in self.kinds]


class DropKeys:
    """Removes top-level keys from every reported result (e.g. ``config``, ``hist_stats``)."""

    def __init__(self, keys: Iterable[str]) -> None:
        self.keys = frozenset(keys)
        if not self.keys:
            raise ValueError("DropKeys needs at least one key")

    def __call__(self, events: list[Event]) -> list[Event]:
        return [self._strip(e) if e.kind == Kind.RESULT.value else e for e in events]

    def _strip(self, event: Event) -> Event:
        if self.keys.isdisjoint(event.payload):
            return event
        payload = {k: v for k, v in event.payload.items() if k not in self.keys}
        return event._replace(payload=payload)
