"""One lineage per trial file: a restored trial's re-reported rows replace the old ones, moved aside."""

from __future__ import annotations

import asyncio
import csv
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pipeline.collector.ledger import Ledger
from pipeline.producer.sender import Sender, SenderConfig
from pipeline.testing import running_collector
from pipeline.wire.codec import encode_event
from pipeline.wire.events import Event
from sinks.base import TrialFiles, close_all, deliver
from sinks.csv import CsvSink
from sinks.json import JsonSink
from sinks.lineage import Settle
from sinks.tensorboard import TensorBoardSink
from tests.readers import read_tensorboard

TRIAL_DIR = Path("exp") / "t1_dir"


def _result(i: int, lineage: str) -> dict[str, Any]:
    return {"training_iteration": i, "value": i + (0.5 if lineage == "new" else 0.0), "lineage": lineage}


def _events(producer: str, iterations: range, lineage: str) -> list[Event]:
    start = Event("trial_start", producer, 0, 0.0, "exp", "t1", "t1_dir", {"config": {"lr": 0.1}})
    return [start] + [Event("result", producer, n, 0.0, "exp", "t1", "t1_dir", _result(i, lineage))
                      for n, i in enumerate(iterations, start=1)]


def _json_rows(path: Path) -> list[tuple[int, str]]:
    rows = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return [(r["training_iteration"], r["lineage"]) for r in rows]


def _csv_rows(path: Path) -> list[tuple[int, str]]:
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return [(int(r["training_iteration"]), r["lineage"]) for r in csv.DictReader(f)]


ROWS: dict[type, tuple[str, str, Callable[[Path], list[tuple[int, str]]]]] = {
    JsonSink: ("result.json", "result.orphaned.json", _json_rows),
    CsvSink: ("progress.csv", "progress.orphaned.csv", _csv_rows),
}
OLD = [(i, "old") for i in range(1, 11)]
NEW = [(i, "old") for i in range(1, 6)] + [(i, "new") for i in range(6, 13)]
MOVED = [(i, "old") for i in range(6, 11)]
CHARTED = [(i, i + (0.5 if i > 5 else 0.0)) for i in range(1, 13)]


def _assert_one_lineage(out: Path, sink: type) -> None:
    main, orphaned, rows = ROWS[sink]
    assert rows(out / TRIAL_DIR / main) == NEW
    assert rows(out / TRIAL_DIR / orphaned) == MOVED


@pytest.mark.parametrize("sink_type", [JsonSink, CsvSink])
def test_rows_reported_again_move_aside_and_the_file_holds_one_lineage(
        tmp_path: Path, sink_type: type) -> None:
    """Results 1..10, then (a new sink, as after a restart) 6..12: the file holds 1..12 once."""
    for events in (_events("p1", range(1, 11), "old"), _events("p2", range(6, 13), "new")):
        sink, trials = sink_type(tmp_path), TrialFiles(tmp_path)
        deliver(sink, events, trials)
        close_all(sink, trials)
    _assert_one_lineage(tmp_path, sink_type)


def test_a_rewind_in_one_batch_moves_the_rows_written_before_it(tmp_path: Path) -> None:
    """1..10 and 6..12 in one write: the second lineage wins within a batch too."""
    sink, trials = JsonSink(tmp_path), TrialFiles(tmp_path)
    deliver(sink, _events("p1", range(1, 11), "old") + _events("p1", range(6, 13), "new")[1:], trials)
    close_all(sink, trials)
    _assert_one_lineage(tmp_path, JsonSink)


def test_tensorboard_gets_a_purge_where_the_steps_go_back(tmp_path: Path) -> None:
    """A SessionLog.START at step 6 (found after a restart too): TensorBoard reads steps 1..12 once."""
    for events in (_events("p1", range(1, 11), "old"), _events("p2", range(6, 13), "new")):
        sink, trials = TensorBoardSink(tmp_path), TrialFiles(tmp_path)
        deliver(sink, events, trials)
        close_all(sink, trials)
    scalars = read_tensorboard(tmp_path / TRIAL_DIR)["scalars"]["ray/tune/value"]
    assert scalars == CHARTED


async def test_a_collector_restarted_between_the_two_drivers_keeps_one_lineage(
        tmp_path: Path, address: str) -> None:
    """Driver 1 sends 1..10, the collector restarts, driver 2 (restored) sends 6..12: one lineage."""
    out = tmp_path / "out"
    for producer, iterations, lineage in (("d1", range(1, 11), "old"), ("d2", range(6, 13), "new")):
        sender = Sender(address, producer, SenderConfig(spool_dir=str(tmp_path / "spool")))
        for n, event in enumerate(_events(producer, iterations, lineage)):
            sender.submit(n, encode_event(event.kind, producer, n, time.time(), "exp", "t1", "t1_dir",
                                          event.payload))
        async with running_collector(out, address):
            assert await asyncio.to_thread(sender.flush, 30)
        sender.close()
    for sink_type in (JsonSink, CsvSink):
        _assert_one_lineage(out, sink_type)
    assert read_tensorboard(out / TRIAL_DIR)["scalars"]["ray/tune/value"] == CHARTED


class Crash(Exception):
    """The collector dies here."""


def _crash_before_commit(ledger: Ledger) -> Callable[[Path, int, int], None]:
    def settle(path: Path, size: int, orphan_at: int) -> None:
        raise Crash("after the orphan file was written, before the ledger knew")
    return settle


def _crash_after_commit(ledger: Ledger) -> Callable[[Path, int, int], None]:
    def settle(path: Path, size: int, orphan_at: int) -> None:
        ledger.settle(path, size, orphan_at)
        raise Crash("after the ledger knew, before the file was cut")
    return settle


def _crash_after_the_batch(ledger: Ledger) -> Callable[[Path, int, int], None]:
    def settle(path: Path, size: int, orphan_at: int) -> None:
        ledger.settle(path, size, orphan_at)
        ledger.after = _crash_instead  # type: ignore[method-assign] # the batch never commits
    return settle


def _crash_instead(*args: object) -> None:
    raise Crash("after the ledger knew, the file was cut and the batch written, before its commit")


@pytest.mark.parametrize("crash", [_crash_before_commit, _crash_after_commit, _crash_after_the_batch])
@pytest.mark.parametrize("sink_type", [JsonSink, CsvSink])
def test_a_crash_in_the_middle_of_a_move_loses_and_doubles_nothing(
        tmp_path: Path, sink_type: Any,
        crash: Callable[[Ledger], Settle]) -> None:
    """The collector dies in or after a move; recovery and the resent batch leave 1..12, 6..10 aside once."""
    state = tmp_path / "ledger.json"

    def write(batch: list[Event], settle: Callable[[Ledger], Settle] | None) -> None:
        ledger = Ledger(state, tmp_path, sink_type.appends, getattr(sink_type, "rewrites_head", False))
        ledger.recover()
        sink, trials = sink_type(tmp_path), TrialFiles(tmp_path)
        sink.settle = settle(ledger) if settle else ledger.settle
        ledger.before(batch)
        deliver(sink, batch, trials)
        ledger.after(batch)
        close_all(sink, trials)

    write(_events("p1", range(1, 9), "old"), None)
    # The resent batch first goes on with the old lineage (9, 10: rows of this batch, uncommitted
    # when the move cuts them out along with the committed 6..8), then restores to 6.
    resent = _events("p2", range(9, 11), "old")
    resent += [Event("result", "p2", n, 0.0, "exp", "t1", "t1_dir", _result(i, "new"))
               for n, i in enumerate(range(6, 13), start=len(resent))]
    with pytest.raises(Crash, match="the ledger knew"):
        write(resent, crash)
    write(resent, None)
    _assert_one_lineage(tmp_path, sink_type)


def test_a_restart_at_the_last_iteration_is_a_rewind_and_repeats_without_one_are_not(
        tmp_path: Path) -> None:
    """After a trial start, the last iteration again replaces it; without a start, rows of one
    iteration stay side by side (as Tune's own loggers keep them)."""
    first = _events("p1", range(1, 11), "old")
    again = Event("result", "p1", 11, 0.0, "exp", "t1", "t1_dir", _result(10, "again"))
    sink, trials = JsonSink(tmp_path), TrialFiles(tmp_path)
    deliver(sink, [*first, again], trials)
    deliver(sink, _events("p2", range(10, 13), "new"), trials)
    close_all(sink, trials)
    kept = [(i, "old") for i in range(1, 10)] + [(i, "new") for i in range(10, 13)]
    assert _json_rows(tmp_path / TRIAL_DIR / "result.json") == kept
    assert _json_rows(tmp_path / TRIAL_DIR / "result.orphaned.json") == [(10, "old"), (10, "again")]
