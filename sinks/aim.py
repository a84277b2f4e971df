"""Aim sink: one ``aim.Run`` per trial, tracked as Tune's AimLoggerCallback tracks it, a dict per result."""

from __future__ import annotations

import importlib.util
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from pipeline.collector.settings import Flag, Names, PathKind, Setting, Text
from pipeline.wire.events import Event
from sinks.base import STATE_DIR, Sink, TrialRef
from sinks.tune_format import REMOVED_HPARAMS, flatten, split_hparams, tune_tag

__all__ = ["AimSink"]

log = logging.getLogger(__name__)

SKIP = frozenset({"config", "pid", "timestamp", "time_total_s", "training_iteration", "context", "epoch"})
SCALAR_TYPES = (int, float, np.float32, np.float64, np.int32, np.int64)
REFUSED = (TypeError, ValueError, KeyError, OverflowError)
"""What a result Aim cannot take raises (a bad context or step); other errors are faults of the repo.
Caught here, per result, not left to the collector's poison isolation: Aim cannot take back what
a retried batch tracked before the bad result, so a retry would track those points twice."""
# The collector's own CPU and terminal are not the trial's: never track them into its run.
RUN_OPTIONS: dict[str, Any] = {"system_tracking_interval": None, "capture_terminal_logs": False}
RUNS_FILE = "aim-runs.json"


class AimSink(Sink):
    """Finite scalars as ``ray/tune/<key>`` with Tune's step, epoch and context; params at start.

    Args:
        out: the collector's ``--out``; the default repo is ``<out>/<experiment>``, as Tune's.
        repo: one Aim repo for every experiment instead.
        metrics: track only these flattened keys (without ``ray/tune/``); empty: all.
        experiment_name: every run's ``experiment`` (AimLoggerCallback's argument); None:
            the trial's Tune experiment name.
        durable: make the collector wait for this sink before acknowledging events.
        runs_file: where the run hash of each trial is remembered, so a trial that starts
            again (restarted by Tune, or after a collector restart) reuses its run
            (default: ``<out>/.tunebus/aim-runs.json``).
        run_class: what makes each trial's run, called as ``aim.Run`` is (default: ``aim.Run``);
            a test seam, not a declared option, so no flag or TOML key sets it.

    The ``aim`` package is imported when the sink is built, not when this module is.
    """

    name = "aim"
    durable = False
    own_process = True  # Run.track is 85-200 us a value: lag in a niced process, not on Tune's cores
    writes_logs = True
    options = (
        Setting("repo", PathKind(directory=True, metavar="DIR"), None,
                "one Aim repo for every experiment", default_text="each experiment's folder, as Tune"),
        Setting("metrics", Names(what="result key"), (),
                "comma-separated result keys (flattened, no ray/tune/ prefix) to track in Aim",
                default_text="every finite scalar"),
        Setting("experiment_name", Text(metavar="NAME"), None,
                "every Aim run's experiment, as AimLoggerCallback's experiment_name",
                default_text="the Tune experiment's name"),
        Setting("durable", Flag(), False,
                "acknowledge events only once Aim has written them too", default_text="Aim may lag"),
    )

    @classmethod
    def check_options(cls, options: dict[str, Any]) -> None:
        if importlib.util.find_spec("aim") is None:
            raise ValueError("the aim sink needs the aim package: pip install 'tunebus[aim]'")

    def __init__(self, out: Path, repo: Path | str | None = None, metrics: Sequence[str] = (),
                 durable: bool = False, runs_file: Path | None = None,
                 experiment_name: str | None = None, run_class: type | None = None) -> None:
        if isinstance(metrics, str) or not all(isinstance(m, str) and m for m in metrics):
            raise ValueError(f"metrics must be a sequence of non-empty names, got {metrics!r}")
        if experiment_name is not None and not (isinstance(experiment_name, str) and experiment_name.strip()):
            raise ValueError(f"experiment_name must be a non-empty name, got {experiment_name!r}")
        if run_class is None:
            from aim.sdk.run import Run  # seconds to import: only when an aim sink is built

            run_class = Run
        self._run_class: Any = run_class
        self.out = out
        self.repo = Path(repo).expanduser() if repo else None
        self.metrics = frozenset(metrics)
        self.durable = durable
        self.experiment_name = experiment_name
        self.runs_file = runs_file if runs_file is not None else out / STATE_DIR / RUNS_FILE
        self._hashes: dict[str, str] = _load(self.runs_file)
        self._runs: dict[tuple[str, str], Any] = {}  # aim.Run objects; aim is untyped
        self._warned: set[str] = set()
        self._said_removed: set[tuple[str, str]] = set()
        self._with_ip: set[tuple[str, str]] = set()

    def open_trial(self, trial: TrialRef, start: Event | None) -> None:
        repo = str(self.repo or self.out / trial.experiment)
        key = "\x00".join((repo, trial.experiment, trial.trial_id))
        known = self._hashes.get(key)
        # The collector is the only writer of these runs: a lock left by a killed collector is stale.
        run = self._run_class(known, repo=repo, experiment=self.experiment_name or trial.experiment,
                              force_resume=known is not None, **RUN_OPTIONS)
        if known is None:
            self._remember(key, run.hash)
        payload = start.payload if start is not None else {}
        run["trial_id"] = trial.trial_id
        if known is None or start is not None:
            run["trial_log_dir"] = str(payload.get("path") or trial.dir)
        params = payload.get("evaluated_params")
        if params and isinstance(params, dict):
            run["hparams"] = self._hparams(trial, params)
        self._runs[trial.key] = run

    def write_results(self, trial: TrialRef, results: list[dict[str, Any]]) -> None:
        run = self._runs[trial.key]
        if trial.key not in self._with_ip and results:
            self._note_ip(trial, run, results[0])
        for result in results:
            try:
                step = int(result.get("timesteps_total") or result["training_iteration"])
                values = self._values(result)
                if values:
                    run.track(values, step=step, epoch=_epoch(result), context=result.get("context"))
            except REFUSED as exc:  # a value Aim refuses loses that result, not the sink
                self._warn(type(exc).__name__, "aim refused a result of %s (%s); left out",
                           trial.trial_id, exc)
            # Anything else (a locked or full repo, a path in the way) raises: the collector
            # retries the batch with backoff, so a fault that clears loses nothing.

    def write_logs(self, trial: TrialRef, logs: list[Event]) -> None:
        """``pipeline.log`` calls: finite scalars under the user's names, ``rank`` in the context."""
        run = self._runs[trial.key]
        for event in logs:
            payload = event.payload
            values = payload.get("values")
            if not isinstance(values, dict):
                continue
            scalars = {k: v for k, v in flatten(values).items()
                       if isinstance(v, SCALAR_TYPES) and _finite(v)
                       and (not self.metrics or k in self.metrics)}
            try:
                if scalars:
                    run.track(scalars, step=payload.get("step"), context={"rank": payload.get("rank")})
            except REFUSED as exc:
                self._warn("log-" + type(exc).__name__, "aim refused a log of %s (%s); left out",
                           trial.trial_id, exc)

    def close_trial(self, trial: TrialRef, end: Event | None) -> None:
        self._with_ip.discard(trial.key)
        self._runs.pop(trial.key).close()

    def flush(self) -> None:
        """Nothing to do: Aim writes each tracked result through to its store."""

    def close(self) -> None:
        for run in self._runs.values():
            run.close()
        self._runs.clear()
        self._with_ip.clear()

    def _values(self, result: dict[str, Any]) -> dict[str, Any]:
        """The finite scalars Tune would track, by their ``ray/tune/`` names."""
        values = {}
        for key, value in flatten(result, skip=SKIP).items():
            if self.metrics and key not in self.metrics:
                continue
            if isinstance(value, SCALAR_TYPES) and _finite(value):
                values[tune_tag(key)] = value
        return values

    def _hparams(self, trial: TrialRef, params: dict[str, Any]) -> dict[str, Any]:
        """Tune's scrubbed hparams without the values Aim refuses (an ``np.str_``): those alone are
        left out, with Tune's, and said once per trial at INFO."""
        kept, removed = split_hparams(params)
        for key, value in list(kept.items()):
            if not _aim_takes(value):
                removed[key] = kept.pop(key)
        if removed and trial.key not in self._said_removed:
            self._said_removed.add(trial.key)
            log.info(REMOVED_HPARAMS, self.name, removed)
        return kept

    def _note_ip(self, trial: TrialRef, run: Any, result: dict[str, Any]) -> None:
        """``trial_ip`` as Tune sets it: the node the trial's actor runs on (the result's ``node_ip``)."""
        ip = result.get("node_ip")
        if ip and isinstance(ip, str):
            run["trial_ip"] = ip
            self._with_ip.add(trial.key)

    def _remember(self, key: str, run_hash: str) -> None:
        self._hashes[key] = run_hash
        self.runs_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.runs_file.with_name(self.runs_file.name + ".tmp")
        tmp.write_bytes(orjson.dumps(self._hashes))
        os.replace(tmp, self.runs_file)

    def _warn(self, kind: str, message: str, *args: object) -> None:
        if kind not in self._warned:
            self._warned.add(kind)
            log.warning(message, *args)


def _aim_takes(value: Any) -> bool:
    """Whether Aim can store ``value`` as a param (its own encoder is the judge)."""
    from aim.storage.treeutils import encode_tree  # aim is imported by then: the sink was built

    try:
        for _ in encode_tree(value):
            pass
    except (TypeError, ValueError):
        return False
    return True


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int past a float's range: Aim cannot store it either
        return False


def _epoch(result: dict[str, Any]) -> int | None:
    """The result's ``epoch`` when it is a whole number: Aim stores any other, then cannot read the run."""
    epoch = result.get("epoch")
    return int(epoch) if isinstance(epoch, (int, np.integer)) and not isinstance(epoch, bool) else None


def _load(runs_file: Path) -> dict[str, str]:
    if not runs_file.exists():
        return {}
    state = orjson.loads(runs_file.read_bytes())
    return {str(k): str(v) for k, v in state.items()}
