"""CSV sink: progress.csv as Tune's CSVLoggerCallback writes it, flattened, keeping columns that come late."""

from __future__ import annotations

import csv
from pathlib import Path

from pipeline.testing import event
from pipeline.wire.events import Event
from sinks.base import TrialFiles, close_all, deliver
from sinks.csv import CsvSink


def _event(kind: str, seq: int, payload: dict[str, object]) -> Event:
    return event(kind, payload, seq=seq, trial_dir="dir_t1")


def _write(out: Path, events: list[Event]) -> CsvSink:
    sink, trials = CsvSink(out), TrialFiles(out)
    deliver(sink, events, trials)
    close_all(sink, trials)
    return sink


def _rows(out: Path) -> list[dict[str, str]]:
    with (out / "exp" / "dir_t1" / "progress.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def test_results_are_flattened_rows_without_the_config(tmp_path: Path) -> None:
    """Nested keys join with '/', config is left out, and every value reads back as written."""
    results = [_event("result", i, {"loss": 0.5 * i, "training_iteration": i, "nested": {"a": i},
                                    "config": {"lr": 0.1}}) for i in (1, 2)]
    sink = _write(tmp_path, [_event("trial_start", 0, {}), *results])
    assert _rows(tmp_path) == [{"loss": "0.5", "training_iteration": "1", "nested/a": "1"},
                               {"loss": "1.0", "training_iteration": "2", "nested/a": "2"}]
    assert sink.bytes_written == (tmp_path / "exp" / "dir_t1" / "progress.csv").stat().st_size


def test_a_column_that_comes_late_widens_the_header_and_keeps_earlier_rows(tmp_path: Path) -> None:
    """A key first seen in a later result gets a column; earlier rows read back with it empty."""
    _write(tmp_path, [_event("result", 1, {"loss": 1.0, "training_iteration": 1})])
    _write(tmp_path, [_event("result", 2, {"loss": 0.5, "training_iteration": 2, "acc": 0.9})])
    assert _rows(tmp_path) == [{"loss": "1.0", "training_iteration": "1", "acc": ""},
                               {"loss": "0.5", "training_iteration": "2", "acc": "0.9"}]


def test_a_row_missing_a_column_gets_an_empty_cell(tmp_path: Path) -> None:
    """A result without one of the header's keys writes an empty cell there, not a shifted row."""
    _write(tmp_path, [_event("result", 1, {"loss": 1.0, "acc": 0.1, "training_iteration": 1}),
                      _event("result", 2, {"training_iteration": 2, "loss": 0.5})])
    assert _rows(tmp_path)[1] == {"loss": "0.5", "acc": "", "training_iteration": "2"}
