"""Real Tune Trial objects for driving callbacks by hand, with a local Ray for their storage paths."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ray.tune.experiment import Trial

__all__ = ["TRAINABLE", "builtin_loggers", "ensure_ray", "real_trials", "trial_dir_name"]

TRAINABLE = "tunebus_bench_noop"


def _noop(config: dict[str, Any]) -> None:
    """Registered so Trial accepts the name; never run."""


def builtin_loggers() -> dict[str, Any]:
    """Tune's four logger callback classes by short name (Ray's are untyped: held as Any)."""
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback, TBXLoggerCallback
    from ray.tune.logger.aim import AimLoggerCallback

    return {"json": JsonLoggerCallback, "csv": CSVLoggerCallback, "tbx": TBXLoggerCallback,
            "aim": AimLoggerCallback}


def trial_dir_name(trial: Trial) -> str:
    """The trial's directory name, as Tune (and the collector) name it."""
    if trial.storage is None:
        raise ValueError(f"trial {trial.trial_id} has no storage context")
    return str(trial.storage.trial_dir_name)


def ensure_ray(num_cpus: int = 1) -> None:
    """A local Ray of ``num_cpus`` (Trial paths need its session directory), quiet; kept if running."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
    import ray

    if not ray.is_initialized():
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, configure_logging=False,
                 log_to_driver=False)


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
        lr, layers = 0.001 * (i + 1), 2 + i % 3
        config = {"lr": lr, "batch": 32, "arch": {"layers": layers}}
        trial: Any = Trial(TRAINABLE, config=config, storage=storage, experiment_tag=f"{i}_lr={lr}",
                           evaluated_params={"lr": lr, "arch/layers": layers})
        trial.init_local_path()
        trials.append(trial)
    return trials
