"""A Tune driver with checkpoints run as its own process: ``fit`` (to be killed), or ``restore``."""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")

import ray  # noqa: E402
from ray import tune  # noqa: E402

from pipeline import BusCallback  # noqa: E402
from tests.trainables import checkpointed  # noqa: E402

NAME = "restored"
EVERY = 5


def main(mode: str, address: str, storage: str, stop_file: str) -> None:
    """``fit`` a one-trial sweep through ``address``, or ``Tuner.restore`` it (its callback unpickled);
    prints the iterations of the trial's ``metrics_dataframe`` as JSON."""
    ray.init(address="local", num_cpus=1, include_dashboard=False, configure_logging=False)
    if mode == "fit":
        tuner = tune.Tuner(
            checkpointed,
            param_space={"every": EVERY, "min_iters": 12, "stop_file": stop_file, "sleep_s": 0.5},
            run_config=tune.RunConfig(name=NAME, storage_path=storage, verbose=0,
                                      callbacks=[BusCallback(address, end_timeout_s=60)]),
        )
    else:
        tuner = tune.Tuner.restore(os.path.join(storage, NAME), checkpointed, resume_unfinished=True)
    grid = tuner.fit()
    print(json.dumps([int(i) for i in grid[0].metrics_dataframe["training_iteration"]]))


if __name__ == "__main__":
    main(*sys.argv[1:])
