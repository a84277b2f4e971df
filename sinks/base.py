"""The sink contract, a base class with defaults, and the one place that turns events into sink calls."""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from pipeline.collector.settings import Setting
from pipeline.wire.events import Event, Kind
from sinks.open_files import OpenFiles

__all__ = ["STATE_DIR", "Setting", "Sink", "TrialFiles", "TrialRef", "close_all", "deliver"]

RESULT = Kind.RESULT.value
START = Kind.TRIAL_START.value
ENDS = frozenset({Kind.TRIAL_COMPLETE.value, Kind.TRIAL_ERROR.value})
EXPERIMENT_END = Kind.EXPERIMENT_END.value
LOG = Kind.LOG.value
_RESULT_ONLY = frozenset({RESULT})
_RESULT_OR_LOG = frozenset({RESULT, LOG})
_KIND, _EXPERIMENT, _TRIAL, _PAYLOAD = (operator.itemgetter(Event._fields.index(f))
                                        for f in ("kind", "experiment", "trial", "payload"))
STATE_DIR = ".tunebus"
"""Where, under ``--out``, the collector and its sinks keep their own state."""


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


def _nothing_to_settle(path: Path, size: int, orphan_at: int) -> None:
    """Without a ledger nothing needs to know a size before a cut."""


class Sink:
    """The sink contract: everything the collector calls on a sink or reads from it.

    A sink is built as ``cls(out, **options)``: ``out`` is the collector's ``--out``,
    ``options`` the values of the settings the class declares in ``options`` (each a
    ``Setting``; ``repo`` of a sink ``aim`` is ``--aim-repo`` on the command line and
    ``repo`` in a ``[sinks.aim]`` TOML table). A sink may keep its own state in
    ``<out>/.tunebus/`` (``STATE_DIR``), in files named after itself. It is registered
    by an entry point in group ``tunebus.sinks`` (see ``sinks/__init__.py``).

    The collector calls the methods from one thread per sink, never two at once, and
    only reads the attributes below; subclasses override what differs from the defaults.
    """

    name: str = ""
    """The name it is asked for by: ``--sinks json,csv``."""
    durable: bool = True
    """Whether the collector waits for this sink before acknowledging events (then a ledger
    makes its writes exactly-once); a sink that is not durable lags behind with a backlog."""
    appends: tuple[str, ...] = ()
    """Glob patterns of the per-trial files this sink only appends to (the ledger cuts them
    back to what was acknowledged after a crash)."""
    rewrites_head: bool = False
    """Whether the sink may rewrite an appended file from its start (CSV widening its header)."""
    own_process: ClassVar[bool] = False
    """Whether, not being durable, this sink runs by default in its own process at lower priority
    (``--<name>-process``), fed from disk, so its CPU never competes with Tune's; a sink whose
    durability is an option declares it as the option ``durable``."""
    options: ClassVar[tuple[Setting, ...]] = ()
    """The settings this sink takes as keyword arguments, declared once."""
    writes_logs: bool = False
    """Whether the sink takes what workers logged with ``pipeline.log`` (it then overrides
    ``write_logs``); a sink that does not never sees ``log`` events, and no trial is opened for them."""
    bytes_written: int | None = None
    """Bytes handed to files so far, for status and metrics; None: this sink does not count them."""
    files: OpenFiles
    """The budget of files this sink keeps open (a sink built into a collector gets its share of
    ``--max-open-files``); a sink opening one file per trial opens it here, so 10,000 trials never
    hold 10,000 descriptors."""
    settle: Callable[[Path, int, int], None] = staticmethod(_nothing_to_settle)
    """Set by the collector for a durable sink (its ledger's ``settle``): a sink about to cut a
    file it appends to (a restored trial's rows moved aside) calls it first with the size it keeps."""

    @classmethod
    def check_options(cls, options: dict[str, Any]) -> None:
        """Raise ValueError with one line if this sink cannot run with ``options`` (already typed
        and in bounds), e.g. a missing optional package; called before anything is built."""

    def open_trial(self, trial: TrialRef, start: Event | None) -> None:
        """Get ready for ``trial``; ``start`` is None when results come before any start."""

    def write_results(self, trial: TrialRef, results: list[dict[str, Any]]) -> None:
        """Write reported results of one trial, in order."""

    def close_trial(self, trial: TrialRef, end: Event | None) -> None:
        """Finish ``trial``; ``end`` is its complete/error event, None when cut short."""

    def write_logs(self, trial: TrialRef, logs: list[Event]) -> None:
        """Write ``log`` events of one trial, in order (payload: step, rank, world_size, values);
        called only when ``writes_logs``."""

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
    """Apply ``events`` to ``sink``, then flush it once.

    Each trial's events keep their order; results of different trials are
    gathered into one ``write_results`` call per trial until that trial's next
    start or end event (trials write different files, so nothing else orders them).
    """
    kinds = set(map(_KIND, events))
    if (kinds == _RESULT_ONLY or not sink.writes_logs and kinds <= _RESULT_OR_LOG) \
            and len(set(map(_EXPERIMENT, events))) == 1:  # the batch under load: one pass in C
        _write_results_only(sink, events if kinds == _RESULT_ONLY else
                            [e for e in events if e.kind == RESULT], trials)
        sink.flush()
        return
    pending: dict[tuple[str, str], list[Event]] = {}
    logs: dict[tuple[str, str], list[Event]] = {}
    writes_logs = sink.writes_logs
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


def _write_results_only(sink: Sink, events: list[Event], trials: TrialFiles) -> None:
    """``deliver`` for results of one experiment: one ``write_results`` per trial, in the order the
    trials first appear (as ``deliver`` would write them)."""
    if not events:
        return
    firsts = dict(zip(map(_TRIAL, reversed(events)), reversed(events)))
    if len(firsts) == 1:
        ref = _opened(sink, trials, events[0], None)
        sink.write_results(ref, list(map(_PAYLOAD, events)))
        return
    groups: dict[str, list[dict[str, Any]]] = {trial: [] for trial in dict.fromkeys(map(_TRIAL, events))}
    for trial, payload in zip(map(_TRIAL, events), map(_PAYLOAD, events)):
        groups[trial].append(payload)
    for trial, results in groups.items():
        sink.write_results(_opened(sink, trials, firsts[trial], None), results)


def _write_pending(sink: Sink, trials: TrialFiles, results: list[Event] | None) -> None:
    if results:
        ref = _opened(sink, trials, results[0], None)
        sink.write_results(ref, [e.payload for e in results])


def _write_logs(sink: Sink, trials: TrialFiles, logs: list[Event] | None) -> None:
    if logs:
        ref = _opened(sink, trials, logs[0], None)
        sink.write_logs(ref, logs)


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
