"""JSON sink: ``result.json``, ``params.json`` and ``params.pkl`` as Tune's JsonLoggerCallback writes them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from pipeline.wire.events import Event
from sinks.base import Sink, TrialRef
from sinks.lineage import ITERATION, iteration, json_rows, last_line, move_tail, rewinds
from sinks.open_files import OpenFiles, PooledFile
from sinks.tune_format import json_line, json_lines, params_json

__all__ = ["JsonSink"]

RESULT_FILE = "result.json"
PARAMS_FILE = "params.json"
PARAMS_PICKLE_FILE = "params.pkl"
WORKER_LOG_FILE = "worker_log.json"
ERROR_FILE = "error.txt"
ORPHANED_FILE = "result.orphaned.json"


class JsonSink(Sink):
    """One ``result.json`` line per reported result; params written when a trial starts.

    A trial's ``result.json`` holds one lineage: when a result's ``training_iteration``
    goes back to or below the last row's (the trial restored an older checkpoint), the
    rows from that iteration on move to ``result.orphaned.json`` first (``move_tail``;
    ``settle`` is the ledger's, which makes the move crash-safe).

    Also ``worker_log.json``: one line per ``pipeline.log`` call (``step``, ``rank``,
    ``timestamp``, ``values``), beside result.json and never in it.
    """

    name = "json"
    writes_logs = True
    appends = ("result.json", WORKER_LOG_FILE, ORPHANED_FILE)

    def __init__(self, out: Path) -> None:
        self.out = out
        self.files = OpenFiles()
        self._files: dict[tuple[str, str], PooledFile] = {}
        self._last: dict[tuple[str, str], int | None] = {}
        self._started: set[tuple[str, str]] = set()
        self._logs: dict[tuple[str, str], PooledFile] = {}
        self._dirty: set[tuple[str, str]] = set()
        self.bytes_written: int = 0

    def open_trial(self, trial: TrialRef, start: Event | None) -> None:
        trial.dir.mkdir(parents=True, exist_ok=True)
        if start is not None:
            config = start.payload.get("config")
            if isinstance(config, dict):
                self.bytes_written += (trial.dir / PARAMS_FILE).write_bytes(params_json(config))
            pickled = start.payload.get("params_pkl")
            if isinstance(pickled, bytes):  # produced by the driver; never unpickled here
                self.bytes_written += (trial.dir / PARAMS_PICKLE_FILE).write_bytes(pickled)
        path = trial.dir / RESULT_FILE
        self._files[trial.key] = self.files.open(path, "ab")
        self._last[trial.key] = _last_iteration(path)
        if start is not None:
            self._started.add(trial.key)

    def write_results(self, trial: TrialRef, results: list[dict[str, Any]]) -> None:
        file, done = self._files[trial.key], 0
        for at, back_to in rewinds(self._last[trial.key], results, trial.key in self._started):
            self._append(file, results[done:at])
            file.flush()
            self._orphan(trial.dir / RESULT_FILE, back_to)
            done = at
        self._append(file, results[done:])
        self._dirty.add(trial.key)
        for result in reversed(results):
            if (now := iteration(result.get(ITERATION))) is not None:
                self._last[trial.key] = now
                self._started.discard(trial.key)
                break

    def _append(self, file: PooledFile, results: list[dict[str, Any]]) -> None:
        if results:
            self.bytes_written += file.write(json_lines(results))

    def _orphan(self, path: Path, back_to: int | None) -> None:
        """Move the rows from iteration ``back_to`` on to ``result.orphaned.json``."""
        cut = next((at for at, now in json_rows(path.read_bytes())
                    if now is not None and back_to is not None and now >= back_to), None)
        if cut is not None:
            move_tail(path, cut, self.settle)

    def write_logs(self, trial: TrialRef, logs: list[Event]) -> None:
        f = self._logs.get(trial.key)
        if f is None:
            f = self._logs[trial.key] = self.files.open(trial.dir / WORKER_LOG_FILE, "ab")
        self.bytes_written += f.write(b"".join([json_line(_log_line(e)) + b"\n" for e in logs]))
        self._dirty.add(trial.key)

    def close_trial(self, trial: TrialRef, end: Event | None) -> None:
        error = end.payload.get("error") if end is not None else None
        if isinstance(error, str):  # a Train run's failures (Tune's driver writes its own error.txt)
            (trial.dir / ERROR_FILE).write_text(error + "\n")
        self._dirty.discard(trial.key)
        self._last.pop(trial.key, None)
        self._started.discard(trial.key)
        self._files.pop(trial.key).close()
        logs = self._logs.pop(trial.key, None)
        if logs is not None:
            logs.close()

    def flush(self) -> None:
        for key in self._dirty:
            self._files[key].flush()
            if key in self._logs:
                self._logs[key].flush()
        self._dirty.clear()

    def close(self) -> None:
        for f in (*self._files.values(), *self._logs.values()):
            f.close()
        self._files.clear()
        self._logs.clear()
        self._dirty.clear()
        self._last.clear()
        self._started.clear()


def _last_iteration(path: Path) -> int | None:
    """The ``training_iteration`` of the last row a previous collector wrote (None: none)."""
    line = last_line(path)
    try:
        return iteration(orjson.loads(line).get(ITERATION)) if line else None
    except (orjson.JSONDecodeError, AttributeError):
        return None


def _log_line(event: Event) -> dict[str, Any]:
    """One ``worker_log.json`` line: where and when the call was made, and what it logged."""
    payload = event.payload
    return {"step": payload.get("step"), "rank": payload.get("rank"), "timestamp": event.ts,
            "values": payload.get("values")}
