"""JSON sink: result.json lines, params.json and params.pkl written as Tune's JsonLoggerCallback does."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

from pipeline.testing import event
from pipeline.wire.events import Event
from sinks.base import TrialFiles, close_all, deliver
from sinks.json import JsonSink

PARAMS_PKL = pickle.dumps({"lr": 0.1})


def _event(kind: str, seq: int, payload: dict[str, object]) -> Event:
    return event(kind, payload, seq=seq, trial_dir="dir_t1")


def _start(seq: int = 0) -> Event:
    return _event("trial_start", seq, {"config": {"lr": 0.1, "arch": {"act": "relu"}},
                                       "params_pkl": PARAMS_PKL})


def _results(first: int, last: int) -> list[Event]:
    return [_event("result", i, {"loss": 1.0 / i, "training_iteration": i, "nested": {"a": i}})
            for i in range(first, last + 1)]


def _write(out: Path, events: list[Event]) -> JsonSink:
    sink, trials = JsonSink(out), TrialFiles(out)
    deliver(sink, events, trials)
    close_all(sink, trials)
    return sink


def test_each_result_is_one_line_and_the_params_files_are_tunes(tmp_path: Path) -> None:
    """A start and three results: params.json sorted and indented, params.pkl as sent, three lines."""
    sink = _write(tmp_path, [_start(), *_results(1, 3), _event("trial_complete", 4, {})])
    trial = tmp_path / "exp" / "dir_t1"
    rows = [json.loads(line) for line in (trial / "result.json").read_text().splitlines()]
    assert rows == [{"loss": 1.0 / i, "training_iteration": i, "nested": {"a": i}} for i in (1, 2, 3)]
    assert (trial / "params.json").read_text() == json.dumps(
        {"arch": {"act": "relu"}, "lr": 0.1}, indent=2, sort_keys=True)
    assert (trial / "params.pkl").read_bytes() == PARAMS_PKL
    assert sink.bytes_written == sum((trial / n).stat().st_size for n in ("result.json", "params.json",
                                                                          "params.pkl"))


def test_a_restarted_trial_appends_to_its_result_json(tmp_path: Path) -> None:
    """A second start of the same trial (a restore, or a new collector) keeps the lines already there."""
    _write(tmp_path, [_start(), *_results(1, 2)])
    _write(tmp_path, [_start(3), *_results(4, 5)])
    lines = (tmp_path / "exp" / "dir_t1" / "result.json").read_text().splitlines()
    assert [json.loads(line)["training_iteration"] for line in lines] == [1, 2, 4, 5]


def test_results_before_any_start_still_open_the_trial(tmp_path: Path) -> None:
    """Results whose start was never seen are written; no params files are made up for them."""
    _write(tmp_path, _results(1, 2))
    trial = tmp_path / "exp" / "dir_t1"
    assert len((trial / "result.json").read_text().splitlines()) == 2
    assert not (trial / "params.json").exists() and not (trial / "params.pkl").exists()
