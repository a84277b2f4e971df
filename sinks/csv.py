"""CSV sink: ``progress.csv`` as Tune's CSVLoggerCallback writes it, but keeping late columns."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any, cast

from pipeline.wire.events import Event
from sinks.base import Sink, TrialRef
from sinks.csv_rows import Cells, Layout, csv_lines
from sinks.lineage import ITERATION, Settle, csv_rows, iteration, last_line, move_tail, rewinds
from sinks.open_files import OpenFiles, PooledFile
from sinks.tune_format import flatten

__all__ = ["CsvSink"]

PROGRESS_FILE = "progress.csv"
ORPHANED_FILE = "progress.orphaned.csv"
SKIP = frozenset({"config"})


class _TrialCsv:
    """One open ``progress.csv``, the columns its header names and its last row's iteration."""

    def __init__(self, path: Path, settle: Settle, started: bool, files: OpenFiles) -> None:
        self.path = path
        self.files = files
        self.settle = settle
        self.started = started
        self.columns: list[str] = _read_header(path)
        self.known = set(self.columns)
        self.last = self._last_iteration()
        self.file: PooledFile = files.open(path, "a", newline="")
        self.layout: Layout | None = None
        self._counted = self.file.tell()
        self._carried = 0

    def _last_iteration(self) -> int | None:
        if ITERATION not in self.columns:
            return None
        column = self.columns.index(ITERATION)
        cells = next(csv.reader([last_line(self.path).decode()]), [])
        if len(cells) != len(self.columns):  # a quoted newline in the last row: read them all
            rows = list(csv_rows(self.path.read_bytes()))
            cells = rows[-1][1] if len(rows) > 1 else []
        return iteration(cells[column]) if len(cells) > column else None

    def append(self, results: list[dict[str, Any]]) -> None:
        """Write ``results``; one whose iteration goes back first moves the rows past it aside."""
        done = 0
        for at, back_to in rewinds(self.last, results, self.started):
            self.write(results[done:at])
            self._orphan(back_to)
            done = at
        self.write(results[done:])
        for row in reversed(results):
            if (now := iteration(row.get(ITERATION))) is not None:
                self.last, self.started = now, False
                break

    def _orphan(self, back_to: int | None) -> None:
        """Move the rows from iteration ``back_to`` on to ``progress.orphaned.csv`` (with the header)."""
        self._carried += self.file.tell() - self._counted
        self.file.close()
        data = self.path.read_bytes()
        rows = list(csv_rows(data))
        column = self.columns.index(ITERATION) if ITERATION in self.columns else -1
        cut = next((at for at, cells in rows[1:] if back_to is not None and len(cells) > column >= 0
                    and (now := iteration(cells[column])) is not None and now >= back_to), None)
        if cut is not None:
            header = data[:rows[1][0]]
            move_tail(self.path, cut, self.settle, header)
        self.file = self.files.open(self.path, "a", newline="")
        self._counted = self.file.tell()

    def take_written(self) -> int:
        """How much the file grew since the last call (a widened header's rewrite by its growth)."""
        at = self.file.tell()
        grown, self._counted, self._carried = at - self._counted + self._carried, at, 0
        return grown

    def write(self, results: list[dict[str, Any]]) -> None:
        """Append one row per result."""
        if self.layout is not None:
            rows = list(map(self.layout.cells, results))
            if None not in rows:  # the usual batch: every result of the last one's shape
                self._append(results, cast("list[Cells]", rows))
                return
        self._write_each(results, shaped=True)

    def _write_each(self, results: list[dict[str, Any]], shaped: bool) -> None:
        """Flatten the results a layout does not take (none when not ``shaped``), widening as needed."""
        rows: list[Cells] = []
        begin = 0
        for at, result in enumerate(results):
            cells = self.layout.cells(result) if shaped and self.layout is not None else None
            if cells is None:
                row = flatten(result, skip=SKIP)
                if not self.known.issuperset(row):
                    self._append(results[begin:at], rows)
                    rows, begin = [], at
                    new = [k for k in row if k not in self.known]  # after the append, which may widen
                    if new:
                        self._widen(new)
                columns = self.columns
                if len(row) == len(columns) and list(row) == columns:  # the usual row: same keys
                    cells = tuple(row.values())
                else:
                    cells = tuple([row.get(k, "") for k in columns])
                self.layout = Layout.build(result, SKIP, columns) if shaped else None
            rows.append(cells)
        self._append(results[begin:], rows)

    def _append(self, results: list[dict[str, Any]], rows: list[Cells]) -> None:
        text = csv_lines(rows)
        if text is None:  # a layout took a result with a new nested dict: flatten each of them
            self._write_each(results, shaped=False)
        else:
            self.file.write(text)

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
        self.file = self.files.open(self.path, "a", newline="")


def _read_header(path: Path) -> list[str]:
    if not path.exists() or path.stat().st_size == 0:
        path.touch()
        return []
    with path.open(newline="") as f:
        return next(csv.reader(f), [])


class CsvSink(Sink):
    """Flattened results (``/`` between nested keys, ``config`` left out), one row each.

    One lineage per ``progress.csv``, as in ``JsonSink``: rows a restored trial
    reports again replace the old ones, which move to ``progress.orphaned.csv``.
    """

    name = "csv"
    appends = (PROGRESS_FILE, ORPHANED_FILE)
    rewrites_head = True

    def __init__(self, out: Path) -> None:
        self.out = out
        self.files = OpenFiles()
        self._trials: dict[tuple[str, str], _TrialCsv] = {}
        self._dirty: set[tuple[str, str]] = set()
        """Trials written since the last flush: only they are flushed (the others' files may be
        closed by the budget, and asking them would open them again)."""
        self.bytes_written: int = 0

    def open_trial(self, trial: TrialRef, start: Event | None) -> None:
        trial.dir.mkdir(parents=True, exist_ok=True)
        self._trials[trial.key] = _TrialCsv(trial.dir / PROGRESS_FILE, self.settle, start is not None,
                                            self.files)

    def write_results(self, trial: TrialRef, results: list[dict[str, Any]]) -> None:
        self._trials[trial.key].append(results)  # a top-level training_iteration: flat or not alike
        self._dirty.add(trial.key)

    def close_trial(self, trial: TrialRef, end: Event | None) -> None:
        closing = self._trials.pop(trial.key)
        if trial.key in self._dirty:
            self._dirty.discard(trial.key)
            closing.file.flush()
            self.bytes_written += closing.take_written()
        closing.file.close()

    def flush(self) -> None:
        for key in self._dirty:
            trial = self._trials[key]
            trial.file.flush()
            self.bytes_written += trial.take_written()
        self._dirty.clear()

    def close(self) -> None:
        self.flush()
        for trial in self._trials.values():
            trial.file.close()
        self._trials.clear()
