"""Schema-valid but odd results: each sink writes what it can of them and never raises (it would stall)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline.wire.codec import decode_frame, encode_event, frame_events
from sinks import make_sink
from sinks.base import TrialFiles, close_all, deliver
from tests.readers import read_aim, read_tensorboard

ODD_RESULTS: list[dict[Any, Any]] = [
    {"x": 2**70}, {"x": -2**80}, {b"k": 1}, {5: {6: 7}}, {1.5: 2.0}, {"n": {(1, 2): 3}},
    {"b": b"\x00\xff"}, {"a": np.array(3.0)}, {"a": np.zeros((0, 3))}, {"c": np.complex64(1 + 2j)},
    {"s": np.array(["a", "b"])}, {"a": np.zeros((1, 2, 3, 4, 5), dtype=np.float32)},
    {"d": {"a": {"b": {"c": {"d": 1.0}}}}}, {"config": 5}, {"x": 1.0, "epoch": "e"},
    {"x": 1.0, "context": [1, 2]}, {"x": 1.0, "timesteps_total": "many"},
]


def _events() -> list[Any]:
    start = {"config": {"lr": 0.1}, "evaluated_params": {"lr": 0.1}}
    encoded = [encode_event("trial_start", "p", 0, 1.0, "e", "t", "d", start)]
    encoded += [encode_event("result", "p", i, 1.0, "e", "t", "d", {**r, "training_iteration": i})
                for i, r in enumerate(ODD_RESULTS, start=1)]
    encoded.append(encode_event("trial_complete", "p", len(encoded), 1.0, "e", "t", "d",
                                {"evaluated_params": {"lr": 0.1}}))
    frame = decode_frame(frame_events("p", 0, encoded))
    assert frame.faults == []
    return frame.events


ROWS = list(range(1, len(ODD_RESULTS) + 1))


def _write(name: str, out: Path) -> Path:
    """Every odd result through the sink called ``name``; the trial's directory."""
    sink, files = make_sink(name, out), TrialFiles(out)
    deliver(sink, _events(), files)
    close_all(sink, files)
    return out / "e" / "d"


def test_odd_results_are_written_by_the_json_sink_as_tune_would(tmp_path: Path) -> None:
    """result.json gets one line per odd result, with keys and values turned into JSON Tune reads."""
    lines = (_write("json", tmp_path) / "result.json").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    assert [r["training_iteration"] for r in rows] == ROWS
    assert rows[0]["x"] == 2**70 and rows[1]["x"] == -2**80
    assert rows[2]["b'k'"] == 1 and rows[3]["5"] == {"6": 7} and rows[5]["n"] == {"(1, 2)": 3}
    assert rows[6]["b"] == "b'\\x00\\xff'" and rows[7]["a"] == 3.0 and rows[8]["a"] == []
    assert rows[10]["s"] == ["a", "b"] and rows[12]["d"] == {"a": {"b": {"c": {"d": 1.0}}}}
    assert rows[13]["config"] == 5 and rows[16]["timesteps_total"] == "many"


def test_odd_results_are_written_by_the_csv_sink_one_row_each(tmp_path: Path) -> None:
    """progress.csv gets a row per odd result, nested keys flattened, odd values as text."""
    with (_write("csv", tmp_path) / "progress.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["training_iteration"]) for r in rows] == ROWS
    assert rows[0]["x"] == str(2**70) and rows[2]["b'k'"] == "1" and rows[3]["5/6"] == "7"
    assert rows[5]["n/(1, 2)"] == "3" and rows[9]["c"] == "(1+2j)" and rows[12]["d/a/b/c/d"] == "1.0"
    assert (rows[14]["epoch"], rows[15]["context"], rows[16]["timesteps_total"]) == ("e", "[1, 2]", "many")
    assert "config" not in rows[0]


def test_odd_results_are_written_by_the_tensorboard_sink_where_it_can(tmp_path: Path) -> None:
    """TensorBoard's reader finds every finite scalar at its step, arrays as histograms, and the hparams."""
    read = read_tensorboard(_write("tensorboard", tmp_path))
    assert read["scalars"] == {"ray/tune/b_k_": [(3, 1.0)], "ray/tune/5/6": [(4, 7.0)],
                               "ray/tune/1.5": [(5, 2.0)], "ray/tune/n/_1__2_": [(6, 3.0)],
                               "ray/tune/d/a/b/c/d": [(13, 1.0)], "ray/tune/x": [(15, 1.0), (16, 1.0)]}
    assert {tag: [step for step, _ in events] for tag, events in read["histograms"].items()} == {
        "ray/tune/a": [8], "ray/tune/context": [16]}
    assert "_hparams_/session_end_info" in read["hparams"]


@pytest.mark.slow  # Aim's repo is read back (reindexed) in child processes
def test_odd_results_are_written_by_the_aim_sink_where_aim_can_read_them(tmp_path: Path) -> None:
    """Aim's reader finds one run with every finite scalar at its step; a non-integer epoch is left out."""
    _write("aim", tmp_path)
    [run] = read_aim(tmp_path / "e")
    assert run["params"]["hparams"] == {"lr": 0.1}
    assert {key: run["metrics"][key]["steps"] for key in run["metrics"]} == {
        "ray/tune/b'k'|{}": [3], "ray/tune/5/6|{}": [4], "ray/tune/1.5|{}": [5], "ray/tune/n/(1, 2)|{}": [6],
        "ray/tune/d/a/b/c/d|{}": [13], "ray/tune/x|{}": [15], "ray/tune/x|[1, 2]": [16]}
    assert run["metrics"]["ray/tune/x|{}"]["epochs"] == [None]
