"""Real Tune Trial objects for driving callbacks by hand, with a local Ray for their storage paths."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ray.tune.experiment import Trial

__all__ = ["TRAINABLE", "ensure_ray", "real_trials"]

TRAINABLE = "tunebus_bench_noop"


def _noop(config: dict[str, Any]) -> None:
    """Registered so Trial accepts the name; never run."""


def ensure_ray() -> None:
    """A local one-CPU Ray (Trial paths need its session directory), quiet."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=1, include_dashboard=False, configure_logging=False, log_to_driver=False)


def real_trials(storage_path: Path, experiment: str, count: int) -> list[Trial]:
    """``count`` Trials of one experiment as the Tuner makes them, trial directories created."""
    ensure_ray()
    from ray.train._internal.storage import StorageContext
    from ray.tune.experiment import Trial
    from ray.tune.registry import register_trainable

    register_trainable(TRAINABLE, _noop)
    storage = StorageContext(storage_path=str(storage_path), experiment_dir_name=experiment)
    trials = []
    for i in range(count):
        config = {"lr": 0.001 * (i + 1), "batch": 32, "arch": {"layers": 2 + i % 3}}
        trial = Trial(TRAINABLE, config=config, storage=storage, experiment_tag=f"{i}_lr={config['lr']}",
                      evaluated_params={"lr": config["lr"], "arch/layers": config["arch"]["layers"]})
        trial.init_local_path()
        trials.append(trial)
    return trials
