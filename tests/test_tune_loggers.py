"""Tune's own loggers with real Tuners: off for a run with a BusCallback, on for every other run."""

from __future__ import annotations

from pathlib import Path

import pytest
from ray import tune

from pipeline import BusCallback
from pipeline.producer.sender import SenderConfig
from tests.trainables import until_told

TUNE_FILES = ("result.json", "progress.csv", "events.out.tfevents.*")


def _fit(storage: Path, name: str, callbacks: list[tune.Callback]) -> Path:
    """A one-trial sweep of five rows; returns its trial directory."""
    grid = tune.Tuner(
        until_told,
        param_space={"k": 1, "min_iters": 5, "stop_file": str(storage), "sleep_s": 0.0},
        run_config=tune.RunConfig(name=name, storage_path=str(storage), verbose=0, callbacks=callbacks),
    ).fit()
    return Path(grid[0].path)


def _written(trial_dir: Path) -> list[str]:
    return sorted(p.name for pattern in TUNE_FILES for p in trial_dir.glob(pattern))


def test_a_built_but_unused_callback_leaves_a_plain_run_its_files(
        ray_session: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Build a BusCallback, run a plain Tuner: Tune still writes result.json, progress.csv, events."""
    monkeypatch.delenv("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", raising=False)
    BusCallback("tcp://127.0.0.1:1")
    trial_dir = _fit(tmp_path, "plain", [])
    assert len((trial_dir / "result.json").read_text().splitlines()) == 5
    names = _written(trial_dir)
    assert "progress.csv" in names and any(n.startswith("events.out.tfevents.") for n in names)


def test_a_run_with_the_callback_gets_no_tune_written_files(
        ray_session: None, tmp_path: Path, address: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a BusCallback (and no collector), Tune itself writes none of the collector's files."""
    monkeypatch.delenv("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", raising=False)
    callback = BusCallback(address, end_timeout_s=0, sender=SenderConfig(spool_dir=str(tmp_path / "spool")))
    assert _written(_fit(tmp_path, "bus", [callback])) == []
