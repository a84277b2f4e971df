"""Who is logging: the trial (or Train run) and the rank of the calling worker, from Ray's own context."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

__all__ = ["TRAIN_TRIAL_DIR", "WorkerHead", "context_token", "resolve_head", "train_head", "trainable_actor"]

TRAIN_TRIAL_DIR = "train"
_TRAIN_CONTEXT = "ray.train.v2._internal.execution.context"
_TUNE_SESSION = "ray.train._internal.session"


@dataclass(frozen=True, slots=True)
class WorkerHead:
    """The names a worker's events carry, and its rank in a run of ``world_size`` workers."""

    experiment: str
    trial: str
    trial_dir: str
    rank: int = 0
    world_size: int = 1
    names: tuple[str, str, str] = field(init=False, repr=False, compare=False)
    """``(experiment, trial, trial_dir)``, the head each event carries, built once per trial."""
    step_key: tuple[str, str, int] = field(init=False, repr=False, compare=False)
    """``(experiment, trial, rank)``: whose steps a call without ``step`` continues."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", (self.experiment, self.trial, self.trial_dir))
        object.__setattr__(self, "step_key", (self.experiment, self.trial, self.rank))


def train_head(run_name: str, rank: int = 0, world_size: int = 1) -> WorkerHead:
    """The head of a Train V2 run's events (controller and workers alike).

    A Train V2 run is one experiment named as the run, with one trial whose id is the
    run name and whose directory is ``train``: ``<out>/<run name>/train/``.
    """
    return WorkerHead(run_name, run_name, TRAIN_TRIAL_DIR, rank, world_size)


def context_token() -> Any:
    """An object that is replaced when this worker starts another trial, read without a call into Ray.

    The Train V2 worker's context, else the Tune function trainable's session, else the
    class ``Trainable`` this actor runs; None outside all three.
    """
    train = sys.modules.get(_TRAIN_CONTEXT)
    token = getattr(train, "_train_context", None)
    if token is not None:
        return token
    session = sys.modules.get(_TUNE_SESSION)
    token = getattr(session, "_session", None)
    if token is not None:
        return token
    return trainable_actor()


def resolve_head(token: Any) -> WorkerHead | None:
    """The head for ``token`` (from ``context_token``); None if it names no trial."""
    if token is None:
        return None
    if type(token).__module__ == _TRAIN_CONTEXT:
        import ray.train

        context = ray.train.get_context()
        return train_head(context.get_experiment_name(), context.get_world_rank(),
                          context.get_world_size())
    if type(token).__module__ == _TUNE_SESSION:
        import ray.tune

        tune_context = ray.tune.get_context()
        storage = tune_context.get_storage()
        return WorkerHead(storage.experiment_dir_name, tune_context.get_trial_id(),
                          storage.trial_dir_name)
    storage = getattr(token, "_storage", None)
    if storage is None or not token.trial_id:
        return None
    return WorkerHead(storage.experiment_dir_name, token.trial_id, storage.trial_dir_name)


def trainable_actor() -> Any:
    """The ``ray.tune.Trainable`` instance this actor process runs, if any (class trainables
    have no session to ask)."""
    trainable_module = sys.modules.get("ray.tune.trainable.trainable")
    worker_module = sys.modules.get("ray._private.worker")
    if trainable_module is None or worker_module is None:
        return None
    actors = getattr(worker_module.global_worker, "actors", {})
    for actor in actors.values():
        if isinstance(actor, trainable_module.Trainable):
            return actor
    return None
