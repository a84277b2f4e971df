"""The sink protocol, and the one place that turns a batch of events into sink calls."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pipeline.wire.events import Event, Kind

__all__ = ["LogSink", "Sink", "TrialFiles", "TrialRef", "close_all", "deliver"]

RESULT = Kind.RESULT.value
START = Kind.TRIAL_START.value
ENDS = frozenset({Kind.TRIAL_COMPLETE.value, Kind.TRIAL_ERROR.value})
EXPERIMENT_END = Kind.EXPERIMENT_END.value
LOG = Kind.LOG.value


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


class LogSink(Protocol):
    """A sink that also writes what workers logged with ``pipeline.log`` (optional: a sink
    without ``write_logs`` never sees ``log`` events, and no trial is opened for them)."""

    def write_logs(self, trial: TrialRef, logs: list[Event]) -> None:
        """Write ``log`` events of one trial, in order (payload: step, rank, world_size, values)."""


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
    """Apply ``events`` to ``sink``, then flush it once.

    Each trial's events keep their order; results of different trials are
    gathered into one ``write_results`` call per trial until that trial's next
    start or end event (trials write different files, so nothing else orders them).
    """
    pending: dict[tuple[str, str], list[Event]] = {}
    logs: dict[tuple[str, str], list[Event]] = {}
    writes_logs = hasattr(sink, "write_logs")
    for event in events:
        kind = event.kind
        if kind == RESULT:
            pending.setdefault(event.key, []).append(event)
            continue
        if kind == LOG:
            if writes_logs:
                logs.setdefault(event.key, []).append(event)
            continue
        if kind == EXPERIMENT_END:
            keys = [k for k in (*pending, *logs, *trials.open) if k[0] == event.experiment]
            for key in dict.fromkeys(keys):
                _write_pending(sink, trials, pending.pop(key, None))
                _write_logs(sink, trials, logs.pop(key, None))
                _close(sink, trials, key, None)
            continue
        _write_pending(sink, trials, pending.pop(event.key, None))
        _write_logs(sink, trials, logs.pop(event.key, None))
        if kind == START:
            _close(sink, trials, event.key, None)
            _opened(sink, trials, event, event)
        elif kind in ENDS:
            _close(sink, trials, event.key, event)
    for results in pending.values():
        _write_pending(sink, trials, results)
    for trial_logs in logs.values():
        _write_logs(sink, trials, trial_logs)
    sink.flush()


def _write_pending(sink: Sink, trials: TrialFiles, results: list[Event] | None) -> None:
    if results:
        ref = _opened(sink, trials, results[0], None)
        sink.write_results(ref, [e.payload for e in results])


def _write_logs(sink: Sink, trials: TrialFiles, logs: list[Event] | None) -> None:
    if logs:
        ref = _opened(sink, trials, logs[0], None)
        sink.write_logs(ref, logs)  # type: ignore[attr-defined] # only called when it has one


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
