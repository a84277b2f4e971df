"""The sink protocol, and the one place that turns a batch of events into sink calls."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pipeline.events import Event, Kind

__all__ = ["Sink", "TrialFiles", "TrialRef", "close_all", "deliver"]

RESULT = Kind.RESULT.value
START = Kind.TRIAL_START.value
ENDS = frozenset({Kind.TRIAL_COMPLETE.value, Kind.TRIAL_ERROR.value})
EXPERIMENT_END = Kind.EXPERIMENT_END.value


@dataclass(frozen=True, slots=True)
class TrialRef:
    """Where one trial's files go: ``<out>/<experiment>/<trial_dir>``."""

    experiment: str
    trial_id: str
    trial_dir: str
    dir: Path

    @property
    def key(self) -> tuple[str, str]:
        return (self.experiment, self.trial_id)


class Sink(Protocol):
    """What a sink does: open a trial, write a batch of its results, close it, flush."""

    name: str
    durable: bool
    """Whether the collector waits for this sink before acknowledging events."""

    def open_trial(self, trial: TrialRef, start: Event | None) -> None:
        """Get ready for ``trial``; ``start`` is None when results come before any start."""

    def write_results(self, trial: TrialRef, results: list[dict[str, Any]]) -> None:
        """Write reported results of one trial, in order."""

    def close_trial(self, trial: TrialRef, end: Event | None) -> None:
        """Finish ``trial``; ``end`` is its complete/error event, None when cut short."""

    def flush(self) -> None:
        """Hand everything written so far to the operating system."""

    def close(self) -> None:
        """Flush and release every file; safe to call twice."""


class TrialFiles:
    """The trials a sink has open, keyed by (experiment, trial id)."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.open: dict[tuple[str, str], TrialRef] = {}

    def ref(self, event: Event) -> TrialRef:
        ref = self.open.get(event.key)
        if ref is None:
            ref = TrialRef(event.experiment, event.trial, event.trial_dir,
                           self.out / event.experiment / event.trial_dir)
        return ref


def deliver(sink: Sink, events: list[Event], trials: TrialFiles) -> None:
    """Apply ``events`` to ``sink`` in order, then flush it once."""
    i, n = 0, len(events)
    while i < n:
        event = events[i]
        kind = event.kind
        if kind == RESULT:
            j = i + 1
            while j < n and events[j].kind == RESULT and events[j].key == event.key:
                j += 1
            sink.write_results(_opened(sink, trials, event, None), [e.payload for e in events[i:j]])
            i = j
            continue
        if kind == START:
            _close(sink, trials, event.key, None)
            _opened(sink, trials, event, event)
        elif kind in ENDS:
            _close(sink, trials, event.key, event)
        elif kind == EXPERIMENT_END:
            for key in [k for k in trials.open if k[0] == event.experiment]:
                _close(sink, trials, key, None)
        i += 1
    sink.flush()


def close_all(sink: Sink, trials: TrialFiles) -> None:
    """Close every open trial (cut short), then the sink."""
    for key in list(trials.open):
        _close(sink, trials, key, None)
    sink.close()


def _opened(sink: Sink, trials: TrialFiles, event: Event, start: Event | None) -> TrialRef:
    ref = trials.open.get(event.key)
    if ref is None:
        ref = trials.ref(event)
        sink.open_trial(ref, start)
        trials.open[event.key] = ref
    return ref


def _close(sink: Sink, trials: TrialFiles, key: tuple[str, str], end: Event | None) -> None:
    ref = trials.open.pop(key, None)
    if ref is not None:
        sink.close_trial(ref, end)
