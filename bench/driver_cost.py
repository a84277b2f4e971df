"""Microseconds the driver spends inside on_trial_result: BusCallback against Tune's own loggers."""

from __future__ import annotations

import functools
import gc
import itertools
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.collector import CollectorProcess, available_sinks
from bench.driver_sweep import in_sweep
from bench.harness import BenchArgs, emit, parse_args, percentiles
from bench.trials import builtin_loggers, ensure_ray, real_trials
from bench.workload import tune_result

__all__ = ["callback_sets", "main", "time_results"]

TRIALS = 8
WARMUP = 20
TARGET_BUS_US = 10.0
TARGET_TIMES_LESS = 100.0
"""In a real sweep: BusCallback's median at least this many times below Tune's JSON+CSV+TBX."""


def callback_sets(address: str) -> dict[str, Callable[[], list[Any]]]:
    """Name to a factory of fresh callbacks, in the order they are measured."""
    from pipeline.producer.callback import BusCallback

    tune = builtin_loggers()
    sets: dict[str, Callable[[], list[Any]]] = {"bus": lambda: [BusCallback(address)]}
    for name, cls in tune.items():
        sets[name] = functools.partial(_one, cls)
    sets["four_builtins"] = lambda: [cls() for cls in tune.values()]
    return sets


def _one(cls: Any) -> list[Any]:
    return [cls()]


def time_results(callbacks: list[Any], trials: list[Any], count: int, budget_s: float) -> list[float]:
    """Seconds per on_trial_result (all ``callbacks`` in turn, as Tune's loop calls them)."""
    for cb in callbacks:
        cb.setup(stop=None, num_samples=len(trials), total_num_samples=len(trials))
        for trial in trials:
            cb.on_trial_start(iteration=0, trials=trials, trial=trial)
    samples: list[float] = []
    deadline = time.monotonic() + budget_s
    clock = time.perf_counter
    results = [tune_result(i // len(trials), t.trial_id, t.config, t.experiment_tag)
               for i, t in zip(range(count + WARMUP), itertools.cycle(trials))]
    for i, result in enumerate(results):
        trial = trials[i % len(trials)]
        started = clock()
        for cb in callbacks:
            cb.on_trial_result(iteration=i, trials=trials, trial=trial, result=result)
        elapsed = clock() - started
        if i >= WARMUP:
            samples.append(elapsed)
            if time.monotonic() > deadline:
                break
    for cb in callbacks:
        for trial in trials:
            cb.on_trial_complete(iteration=count, trials=trials, trial=trial)
        cb.on_experiment_end(trials=trials)
    return samples


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args: BenchArgs = parse_args("driver_cost", argv)
    started = time.monotonic()
    count, budget_s = (300, 2.0) if args.quick else (5_000, 20.0)
    rows: dict[str, Any] = {}
    ensure_ray(num_cpus=2)  # two: the sweep's trials run side by side
    with tempfile.TemporaryDirectory(prefix="tunebus-bench-") as tmp:
        root = Path(tmp)
        with CollectorProcess(root / "bus", available_sinks()) as collector:
            for name, make in callback_sets(collector.address).items():
                trials = real_trials(root / name, f"drv_{name}", TRIALS)
                gc.collect()
                samples = time_results(make(), trials, count, budget_s)
                rows[name] = percentiles(samples, 1e6)
            sweep = in_sweep(collector.address, root / "sweep", args.quick)
            collector.stop()
    bus = rows["bus"]["median"] or 1e-9
    ratios = {name: round(row["median"] / bus, 1) for name, row in rows.items() if name != "bus"}
    if args.plots:
        from bench.plots import driver_cost_plot

        driver_cost_plot(rows)
    return emit("driver_cost", args, started, {
        "unit": "us per on_trial_result", "trials": TRIALS, "collector_sinks": list(available_sinks()),
        "callbacks": rows, "times_bus_median": ratios,
        "target": {"bus_median_us": TARGET_BUS_US, "met": rows["bus"]["median"] <= TARGET_BUS_US},
        "in_sweep": sweep,
        "in_sweep_target": {
            "bus_median_us": TARGET_BUS_US, "times_less_than_tune_three": TARGET_TIMES_LESS,
            "met": (sweep["callbacks"]["bus_beside_tune"]["median"] <= TARGET_BUS_US
                    and sweep["callbacks"]["bus_alone"]["median"] <= TARGET_BUS_US
                    and sweep["tune_three_times_bus_median"] >= TARGET_TIMES_LESS)},
    })


if __name__ == "__main__":
    main()
