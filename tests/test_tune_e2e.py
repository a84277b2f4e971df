"""A real Tuner sweep through a real collector, compared with Tune's own JSON and CSV loggers."""

from __future__ import annotations

import csv
import json
import signal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ray import tune
from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

from pipeline import BusCallback

ITERATIONS = 6
FAIL_AT = 3
# Fields that differ between any two runs by nature.
VOLATILE = {"timestamp", "date", "time_this_iter_s", "time_total_s", "time_since_restore",
            "pid", "hostname", "node_ip", "trial_id", "experiment_tag", "checkpoint_dir_name"}


def trainable(config: dict[str, Any]) -> None:
    """Deterministic results with a nested dict, numpy values and NaN; one trial fails."""
    for i in range(ITERATIONS):
        if config["fail"] and i == FAIL_AT:
            raise RuntimeError("this trial fails on purpose")
        result: dict[str, Any] = {
            "loss": config["lr"] * (ITERATIONS - i),
            "nested": {"a": i, "deep": {"b": float(i) / 3}},
            "np_f32": np.float32(0.1) * i,
            "np_nan32": np.float32("nan"),
            "nan": float("nan"),
            "inf": float("inf"),
            "arr": np.arange(3) * i,
            "np_int": np.int64(i),
        }
        if i >= 2:
            result["late"] = i  # a key that appears only in later results
        tune.report(result)


PARAM_SPACE = {"lr": tune.grid_search([0.1, 0.2, 0.3]), "fail": tune.grid_search([False])}


def _run(storage: Path, name: str, callbacks: list[Any]) -> tune.ResultGrid:
    space = dict(PARAM_SPACE, fail=tune.grid_search([False, True]))
    tuner = tune.Tuner(
        trainable,
        param_space=space,
        tune_config=tune.TuneConfig(max_concurrent_trials=2),
        run_config=tune.RunConfig(name=name, storage_path=str(storage), callbacks=callbacks,
                                  verbose=0, failure_config=tune.FailureConfig(fail_fast=False)),
    )
    return tuner.fit()


def _trial_dirs(experiment: Path) -> list[Path]:
    """Trial directories ordered by trial index (ids and dates differ between runs)."""
    dirs = [d for d in experiment.iterdir() if d.is_dir() and (d / "params.json").exists()]
    return sorted(dirs, key=lambda d: d.name.split("_")[3])


def _stable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in VOLATILE}


def _json_rows(trial_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (trial_dir / "result.json").read_text().splitlines()]


def _csv_rows(trial_dir: Path) -> list[dict[str, str]]:
    with (trial_dir / "progress.csv").open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def sweeps(ray_session: None, tmp_path_factory: pytest.TempPathFactory,
           ) -> tuple[Path, Path, tune.ResultGrid]:
    """The same sweep twice: once with Tune's loggers, once through tunebus."""
    from pipeline.testing import free_address, start_collector

    base = tmp_path_factory.mktemp("sweeps")
    tune_grid = _run(base / "tune", "exp", [JsonLoggerCallback(), CSVLoggerCallback()])
    assert len(tune_grid) == 6
    address = free_address()
    proc = start_collector(address, base / "bus")
    try:
        bus_grid = _run(base / "bus", "exp", [BusCallback(address)])
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    return base / "tune" / "exp", base / "bus" / "exp", bus_grid


def test_result_json_matches_tune_field_by_field(sweeps: tuple[Path, Path, Any]) -> None:
    """Every result.json row reads back to the same values Tune's own JSON logger wrote."""
    tune_exp, bus_exp, _ = sweeps
    tune_dirs, bus_dirs = _trial_dirs(tune_exp), _trial_dirs(bus_exp)
    assert len(tune_dirs) == len(bus_dirs) == 6
    for ours, theirs in zip(bus_dirs, tune_dirs):
        want = [_stable(r) for r in _json_rows(theirs)]
        got = [_stable(r) for r in _json_rows(ours)]
        assert len(got) == len(want) > 0
        for g, w in zip(got, want):
            assert json.dumps(g, sort_keys=True) == json.dumps(w, sort_keys=True)


def test_params_files_match_tune(sweeps: tuple[Path, Path, Any]) -> None:
    """params.json reads back to Tune's, and params.pkl holds the same pickled config."""
    import pickle

    tune_exp, bus_exp, _ = sweeps
    for ours, theirs in zip(_trial_dirs(bus_exp), _trial_dirs(tune_exp)):
        assert json.loads((ours / "params.json").read_text()) == json.loads(
            (theirs / "params.json").read_text())
        assert pickle.loads((ours / "params.pkl").read_bytes()) == pickle.loads(
            (theirs / "params.pkl").read_bytes())


def test_progress_csv_matches_tune_and_keeps_late_columns(sweeps: tuple[Path, Path, Any]) -> None:
    """progress.csv cells equal Tune's; the key Tune drops (first seen late) is kept."""
    tune_exp, bus_exp, _ = sweeps
    for ours, theirs in zip(_trial_dirs(bus_exp), _trial_dirs(tune_exp)):
        got, want = _csv_rows(ours), _csv_rows(theirs)
        assert len(got) == len(want) > 0
        assert "late" not in want[0]
        for i, (g, w) in enumerate(zip(got, want)):
            assert {k: v for k, v in g.items() if k in w and k not in VOLATILE} == _stable(w)
            assert g["late"] == (str(i) if i >= 2 else "")


def test_experiment_analysis_reads_every_trial_and_row(sweeps: tuple[Path, Path, Any]) -> None:
    """ExperimentAnalysis finds all six trials and every reported row in our files."""
    _, bus_exp, _ = sweeps
    analysis = tune.ExperimentAnalysis(str(bus_exp))
    frames = analysis.trial_dataframes
    assert len(frames) == 6
    lengths = sorted(len(df) for df in frames.values())
    assert lengths == [FAIL_AT] * 3 + [ITERATIONS] * 3
    assert all("nested/deep/b" in df.columns for df in frames.values())


def test_fit_returns_complete_metrics_dataframes(sweeps: tuple[Path, Path, Any]) -> None:
    """Tuner.fit() built its ResultGrid from files the collector had finished writing."""
    _, _, grid = sweeps
    lengths = sorted(len(r.metrics_dataframe) for r in grid)
    assert lengths == [FAIL_AT] * 3 + [ITERATIONS] * 3
    assert sum(1 for r in grid if r.error is not None) == 3
