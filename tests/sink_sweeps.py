"""One small Tuner sweep, run by Tune's TBX and Aim callbacks and again through a collector."""

from __future__ import annotations

import functools
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from ray import tune

ITERATIONS = 4
FAIL_AT = 3
EXPERIMENT = "exp"


def trainable(config: dict[str, Any]) -> None:
    """Scalars of every kind Tune sorts, arrays for images and histograms, epoch and context; lr 0.2 fails."""
    for i in range(ITERATIONS):
        if config["lr"] > 0.15 and i == FAIL_AT:
            raise RuntimeError("this trial fails on purpose")
        result: dict[str, Any] = {
            "loss": config["lr"] * (ITERATIONS - i), "ok": i % 2 == 0, "count": i,
            "np_f32": np.float32(0.1) * i, "np_i64": np.int64(i), "nan": float("nan"),
            "inf": float("inf"), "text": "skipped", "pair": (1, 2),
            "nested": {"a": i, "deep": {"b": float(i) / 3}},
            "hist_list": [1.0, 2.0, float(i)], "hist_arr": np.arange(5) * (i + 1),
            "image": np.full((3, 4, 4), 0.1 * i, dtype=np.float32),
            "images": np.full((2, 1, 3, 3), 20 * i, dtype=np.uint8),
            "epoch": i // 2, "context": {"subset": "train"},
        }
        if config["lr"] > 0.15:
            result["timesteps_total"] = 10 * (i + 1)
        tune.report(result)


PARAM_SPACE = {"lr": tune.grid_search([0.1, 0.2]), "arch": {"act": tune.grid_search(["relu"])},
               "shape": tune.grid_search([(2, 3)]), "fixed": 7}


@dataclass(frozen=True)
class Sweeps:
    """Where each run's experiment directory and Aim repo are."""

    tune_exp: Path
    bus_exp: Path
    tune_aim: Path
    bus_aim: Path


def _run(storage: Path, callbacks: list[Any]) -> tune.ResultGrid:
    tuner = tune.Tuner(
        trainable, param_space=PARAM_SPACE, tune_config=tune.TuneConfig(max_concurrent_trials=2),
        run_config=tune.RunConfig(name=EXPERIMENT, storage_path=str(storage), callbacks=callbacks,
                                  verbose=0, failure_config=tune.FailureConfig(fail_fast=False)),
    )
    return tuner.fit()


@functools.cache
def run_sweeps(base: Path) -> Sweeps:
    """The sweep with Tune's TBX and Aim callbacks, then through tunebus (once per session)."""
    from ray.tune.logger import TBXLoggerCallback
    from ray.tune.logger.aim import AimLoggerCallback

    from pipeline import BusCallback
    from pipeline.testing import free_address, start_collector

    tune_aim, bus_aim = base / "tune-aim", base / "bus-aim"
    grid = _run(base / "tune", [TBXLoggerCallback(), AimLoggerCallback(repo=str(tune_aim))])
    assert len(grid) == 2
    address = free_address()
    proc = start_collector(address, base / "bus", "--sinks", "json,tensorboard,aim",
                           "--aim-repo", str(bus_aim))
    try:
        assert len(_run(base / "bus", [BusCallback(address)])) == 2
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    return Sweeps(base / "tune" / EXPERIMENT, base / "bus" / EXPERIMENT, tune_aim, bus_aim)


def trial_dirs(experiment: Path) -> list[Path]:
    """Trial directories ordered by trial index (ids and dates differ between runs)."""
    dirs = [d for d in experiment.iterdir() if d.is_dir() and list(d.glob("events.out.tfevents.*"))]
    return sorted(dirs, key=lambda d: d.name.split("_")[3])
