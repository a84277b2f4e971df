"""pipeline.log inside real Tune trainables (function and class) through a real collector, read back."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ray import tune
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import pipeline
from pipeline import BusCallback

pytestmark = pytest.mark.slow

ITERATIONS = 3
STEPS = 20


def function_trainable(config: dict[str, Any]) -> None:
    """Logs STEPS batches per iteration with no step given, an image once, and reports."""
    for i in range(ITERATIONS):
        for _ in range(STEPS):
            pipeline.log({"batch/loss": config["lr"] * i, "grad_norm": 1.0})
        if i == 0:
            pipeline.log({"sample": np.zeros((3, 4, 4), dtype=np.uint8)}, step=0)
        tune.report({"loss": config["lr"] * i})


class ClassTrainable(tune.Trainable):
    """The same, as a class: no session here, the logger finds the trial through the actor."""

    def setup(self, config: dict[str, Any]) -> None:
        self.lr = config["lr"]

    def step(self) -> dict[str, Any]:
        for _ in range(STEPS):
            pipeline.log({"batch/loss": self.lr * self.iteration, "grad_norm": 1.0})
        return {"loss": self.lr * self.iteration, "done": self.iteration + 1 >= ITERATIONS}

    def save_checkpoint(self, checkpoint_dir: str) -> None:
        """Nothing to keep (Tune saves a class trainable when it is done)."""

    def load_checkpoint(self, checkpoint: Any) -> None:
        """Nothing to restore."""


def _fit(trainable: Any, storage: Path, name: str, address: str) -> tune.ResultGrid:
    tuner = tune.Tuner(
        trainable, param_space={"lr": tune.grid_search([0.1, 0.2])},
        tune_config=tune.TuneConfig(max_concurrent_trials=2),
        run_config=tune.RunConfig(name=name, storage_path=str(storage), verbose=0,
                                  callbacks=[BusCallback(address)]),
    )
    return tuner.fit()


@pytest.fixture(scope="module")
def sweeps(ray_session: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A function sweep and a class sweep, through one collector; files read after fit() returns."""
    from pipeline.testing import free_address, start_collector

    out = tmp_path_factory.mktemp("tune_log")
    address = free_address()
    proc = start_collector(address, out)
    try:
        assert not _fit(function_trainable, out, "fn", address).errors
        assert not _fit(ClassTrainable, out, "cls", address).errors
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    return out


def _trial_dirs(experiment: Path) -> list[Path]:
    return sorted(d for d in experiment.iterdir() if (d / "result.json").exists())


@pytest.mark.parametrize("name", ["fn", "cls"])
def test_every_call_is_in_tensorboard_at_its_step_under_the_users_tag(sweeps: Path, name: str) -> None:
    """Scalars at steps 0..N-1 (counted per trial when no step is given), beside Tune's ray/tune/ tags."""
    dirs = _trial_dirs(sweeps / name)
    assert len(dirs) == 2
    for trial_dir in dirs:
        acc = EventAccumulator(str(trial_dir), size_guidance={"scalars": 0, "images": 0})
        acc.Reload()
        assert [e.step for e in acc.Scalars("batch/loss")] == list(range(ITERATIONS * STEPS))
        assert "ray/tune/loss" in acc.Tags()["scalars"]
        if name == "fn":
            assert "sample" in acc.Tags()["images"]


@pytest.mark.parametrize("name", ["fn", "cls"])
def test_result_json_stays_tunes_and_worker_log_json_has_every_call(sweeps: Path, name: str) -> None:
    """ExperimentAnalysis sees only the reported rows; worker_log.json one line per call."""
    analysis = tune.ExperimentAnalysis(str(sweeps / name))
    frames = analysis.trial_dataframes
    assert sorted(len(df) for df in frames.values()) == [ITERATIONS, ITERATIONS]
    assert all("batch/loss" not in df.columns for df in frames.values())
    for trial_dir in _trial_dirs(sweeps / name):
        lines = (trial_dir / "worker_log.json").read_text().splitlines()
        scalar_lines = [json.loads(x) for x in lines if "grad_norm" in x]
        assert len(scalar_lines) == ITERATIONS * STEPS
        assert {x["rank"] for x in scalar_lines} == {0}
