"""Microseconds inside on_trial_result during a real ``Tuner.fit()``: BusCallback alone and beside Tune's."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.harness import child_env, percentiles
from bench.trials import builtin_loggers

__all__ = ["TUNE_THREE", "in_sweep", "timed"]

TUNE_THREE = ("json", "csv", "tbx")
SWEEP_TRIALS = 4
SWEEP_ITERATIONS = 200


def timed(callback: Any, samples: list[int]) -> Any:
    """``callback`` whose ``on_trial_result`` appends the nanoseconds of each call to ``samples``."""
    inner: Callable[..., None] = callback.on_trial_result
    clock = time.perf_counter_ns

    def on_trial_result(*args: Any, **kwargs: Any) -> None:
        began = clock()
        inner(*args, **kwargs)
        samples.append(clock() - began)

    callback.on_trial_result = on_trial_result
    return callback


def _fit(name: str, storage: Path, callbacks: list[Any], trials: int, iterations: int) -> None:
    from ray import tune

    from bench.trainables import fast

    tune.Tuner(
        fast,
        param_space={"iterations": iterations, "lr": tune.uniform(0.001, 0.1)},
        tune_config=tune.TuneConfig(num_samples=trials),
        run_config=tune.RunConfig(name=name, storage_path=str(storage), verbose=0, callbacks=callbacks),
    ).fit()


def in_sweep(address: str, storage: Path, quick: bool) -> dict[str, Any]:
    """Each callback's us per on_trial_result inside ``Tuner.fit()`` (4 trials x 200 results):
    BusCallback alone, then BusCallback, Tune's JSON, CSV and TBX loggers in one run."""
    from pipeline.producer.callback import BusCallback

    os.environ["PYTHONPATH"] = child_env()["PYTHONPATH"]  # the Ray workers import bench.trainables
    iterations = 20 if quick else SWEEP_ITERATIONS
    _fit("warmup", storage, [], 2, 5)  # unmeasured: the first fit pays for worker start-up
    alone: list[int] = []
    _fit("bus_alone", storage, [timed(BusCallback(address), alone)], SWEEP_TRIALS, iterations)
    beside: dict[str, list[int]] = {name: [] for name in ("bus", *TUNE_THREE)}
    loggers = builtin_loggers()
    callbacks = [timed(BusCallback(address), beside["bus"]),
                 *(timed(loggers[name](), beside[name]) for name in TUNE_THREE)]
    _fit("bus_beside_tune", storage, callbacks, SWEEP_TRIALS, iterations)
    three = [sum(calls) for calls in zip(*(beside[name] for name in TUNE_THREE))]
    rows = {"bus_alone": percentiles(alone, 1e-3), "bus_beside_tune": percentiles(beside["bus"], 1e-3),
            **{name: percentiles(beside[name], 1e-3) for name in TUNE_THREE},
            "tune_three": percentiles(three, 1e-3)}
    bus = max(1e-9, rows["bus_beside_tune"]["median"])
    return {"trials": SWEEP_TRIALS, "iterations": iterations, "callbacks": rows,
            "tune_three_times_bus_median": round(rows["tune_three"]["median"] / bus, 1)}
