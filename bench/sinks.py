"""Results/s of each sink alone against Tune's own logger callback, on the same 10-scalar results, one run."""

from __future__ import annotations

import argparse
import pickle
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.harness import BenchArgs, emit, parse_args
from bench.trials import builtin_loggers, real_trials, trial_dir_name
from bench.workload import tune_result

__all__ = ["main", "measure_ours", "measure_tune", "sink_events"]

TRIALS = 4
BATCH_EVENTS = 1_000
# Our sink name -> Tune's callback short name (bench.trials.builtin_loggers).
PAIRS = {"json": "json", "csv": "csv", "tensorboard": "tbx", "aim": "aim"}


class SinksArgs(BenchArgs):
    """The common flags, and which sinks to measure."""

    only: list[str] | None


def _only(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--only", action="append", choices=list(PAIRS), metavar="SINK",
                        help="measure only this sink (repeatable; default: all)")


def sink_events(trials: list[Any], per_trial: int) -> list[Any]:
    """What the collector hands a sink: each trial's start, its results interleaved, its end."""
    from pipeline.wire.events import Event

    exp = trials[0].experiment_dir_name

    def event(kind: str, seq: int, trial: Any, payload: dict[str, Any]) -> Event:
        return Event(kind, "bench", seq, time.time(), exp, trial.trial_id, trial_dir_name(trial), payload)

    events = [event("trial_start", 0, t, {"config": t.config, "evaluated_params": t.evaluated_params,
                                          "params_pkl": pickle.dumps(t.config), "path": t.path})
              for t in trials]
    for i in range(per_trial):
        events += [event("result", 0, t, tune_result(i, t.trial_id, t.config, t.experiment_tag))
                   for t in trials]
    events += [event("trial_complete", 0, t, {"evaluated_params": t.evaluated_params}) for t in trials]
    return [e._replace(seq=seq) for seq, e in enumerate(events)]


def measure_ours(name: str, root: Path, per_trial: int) -> tuple[float, float]:
    """Results per wall and CPU second through our sink ``name``, in batches as its worker delivers them."""
    from sinks import make_sink
    from sinks.base import TrialFiles, close_all, deliver

    trials = real_trials(root, f"ours_{name}", TRIALS)
    events = sink_events(trials, per_trial)
    sink = make_sink(name, root)
    files = TrialFiles(root)
    began, cpu = time.perf_counter(), time.thread_time()
    for at in range(0, len(events), BATCH_EVENTS):
        deliver(sink, events[at:at + BATCH_EVENTS], files)
    close_all(sink, files)
    return _rates(TRIALS * per_trial, began, cpu)


def _rates(results: int, began: float, cpu: float) -> tuple[float, float]:
    """Results per wall second and per CPU second of this thread (steady on a busy machine)."""
    return results / (time.perf_counter() - began), results / max(1e-9, time.thread_time() - cpu)


def measure_tune(name: str, root: Path, per_trial: int) -> tuple[float, float]:
    """Results per wall and CPU second through Tune's own callback ``name``, driven as Tune's loop does."""
    trials = real_trials(root, f"tune_{name}", TRIALS)
    make: Callable[..., Any] = builtin_loggers()[name]
    callback = make(repo=str(root / "tune-aim")) if name == "aim" else make()
    results = [[tune_result(i, t.trial_id, t.config, t.experiment_tag) for t in trials]
               for i in range(per_trial)]
    began, cpu = time.perf_counter(), time.thread_time()
    for trial in trials:
        callback.on_trial_start(iteration=0, trials=trials, trial=trial)
    for i, row in enumerate(results):
        for trial, result in zip(trials, row):
            callback.on_trial_result(iteration=i, trials=trials, trial=trial, result=result)
    for trial in trials:
        callback.on_trial_complete(iteration=per_trial, trials=trials, trial=trial)
    return _rates(TRIALS * per_trial, began, cpu)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args("sinks", argv, _only, SinksArgs())
    assert isinstance(args, SinksArgs)
    started = time.monotonic()
    per_trial = 50 if args.quick else 1_500
    rows = {}
    with tempfile.TemporaryDirectory(prefix="tunebus-bench-sinks-") as tmp:
        for ours, theirs in PAIRS.items():
            if args.only and ours not in args.only:
                continue
            tune_per_s, tune_cpu = measure_tune(theirs, Path(tmp) / f"tune-{theirs}", per_trial)
            ours_per_s, ours_cpu = measure_ours(ours, Path(tmp) / f"ours-{ours}", per_trial)
            rows[ours] = {"tune_callback": theirs, "ours_per_s": round(ours_per_s),
                          "tune_per_s": round(tune_per_s), "speedup": round(ours_per_s / tune_per_s, 1),
                          "ours_per_cpu_s": round(ours_cpu), "tune_per_cpu_s": round(tune_cpu),
                          "cpu_speedup": round(ours_cpu / tune_cpu, 1)}
    return emit("sinks", args, started, {
        "unit": "results/s (per wall second, and per CPU second of the writing thread), one sink alone",
        "trials": TRIALS, "results": TRIALS * per_trial,
        "scalars_per_result": 10, "batch_events": BATCH_EVENTS, "sinks": rows})


if __name__ == "__main__":
    main()
