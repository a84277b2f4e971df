"""CSV sink: ``progress.csv`` as Tune's CSVLoggerCallback writes it, but keeping late columns."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import IO, Any

from pipeline.wire.events import Event
from sinks.base import TrialRef
from sinks.tune_format import flatten

__all__ = ["CsvSink"]

PROGRESS_FILE = "progress.csv"
SKIP = frozenset({"config"})


class _TrialCsv:
    """One open ``progress.csv`` and the columns its header names."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.columns: list[str] = _read_header(path)
        self.known = set(self.columns)
        self.file: IO[str] = path.open("a", newline="")
        self.writer = csv.writer(self.file)
        self._counted = self.file.tell()

    def take_written(self) -> int:
        """How much the file grew since the last call (a widened header's rewrite by its growth)."""
        at = self.file.tell()
        grown, self._counted = at - self._counted, at
        return grown

    def write(self, rows: list[dict[str, Any]]) -> None:
        columns = self.columns
        cells = []
        for row in rows:
            if len(row) == len(columns) and list(row) == columns:  # the usual row: same keys
                cells.append(list(row.values()))
                continue
            new = [k for k in row if k not in self.known]
            if new:
                self.writer.writerows(cells)
                cells = []
                self._widen(new)
                columns = self.columns
            cells.append([row.get(k, "") for k in columns])
        self.writer.writerows(cells)

    def _widen(self, new: list[str]) -> None:
        """Add columns: a fresh file gets its header, an old one is rewritten with a wider one."""
        self.file.close()
        old = self.columns
        self.columns = old + new
        self.known.update(new)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with self.path.open(newline="") as src, tmp.open("w", newline="") as dst:
            rows = csv.reader(src)
            next(rows, None)
            writer = csv.writer(dst)
            writer.writerow(self.columns)
            pad = [""] * len(new)
            writer.writerows(row + pad for row in rows)
        os.replace(tmp, self.path)
        self.file = self.path.open("a", newline="")
        self.writer = csv.writer(self.file)


def _read_header(path: Path) -> list[str]:
    if not path.exists() or path.stat().st_size == 0:
        path.touch()
        return []
    with path.open(newline="") as f:
        return next(csv.reader(f), [])


class CsvSink:
    """Flattened results (``/`` between nested keys, ``config`` left out), one row each."""

    name = "csv"
    durable = True
    appends = ("progress.csv",)
    rewrites_head = True

    def __init__(self, out: Path) -> None:
        self.out = out
        self._trials: dict[tuple[str, str], _TrialCsv] = {}
        self.bytes_written = 0

    def open_trial(self, trial: TrialRef, start: Event | None) -> None:
        trial.dir.mkdir(parents=True, exist_ok=True)
        self._trials[trial.key] = _TrialCsv(trial.dir / PROGRESS_FILE)

    def write_results(self, trial: TrialRef, results: list[dict[str, Any]]) -> None:
        self._trials[trial.key].write([flatten(r, skip=SKIP) for r in results])

    def close_trial(self, trial: TrialRef, end: Event | None) -> None:
        closing = self._trials.pop(trial.key)
        closing.file.flush()
        self.bytes_written += closing.take_written()
        closing.file.close()

    def flush(self) -> None:
        for trial in self._trials.values():
            trial.file.flush()
            self.bytes_written += trial.take_written()

    def close(self) -> None:
        for trial in self._trials.values():
            trial.file.flush()
            self.bytes_written += trial.take_written()
            trial.file.close()
        self._trials.clear()
