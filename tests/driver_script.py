"""A Tune driver run as its own process by the tests, so that it can be killed."""

from __future__ import annotations

import os
import sys

os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")

from ray import tune  # noqa: E402

from pipeline import BusCallback  # noqa: E402
from pipeline.producer.sender import SenderConfig  # noqa: E402
from tests.trainables import until_told  # noqa: E402


def main(address: str, storage: str, spool_dir: str, stop_file: str) -> None:
    """A sweep that reports until ``stop_file`` exists, holding at most one event in memory."""
    config = SenderConfig(max_buffer_events=1, spool_dir=spool_dir)
    tune.Tuner(
        until_told,
        param_space={"k": 1, "min_iters": 10, "stop_file": stop_file, "sleep_s": 0.01},
        run_config=tune.RunConfig(name="killed", storage_path=storage, verbose=0,
                                  callbacks=[BusCallback(address, sender=config)]),
    ).fit()


if __name__ == "__main__":
    main(*sys.argv[1:])
