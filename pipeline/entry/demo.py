"""``tunebus demo``: a small Tune sweep through a collector started for it."""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path
from typing import Any

from pipeline.testing import free_address, start_collector

__all__ = ["run_demo"]


def _trainable(config: dict[str, Any]) -> None:
    from ray import tune

    loss = 10.0
    for step in range(config["iterations"]):
        loss *= 1 - config["lr"] * random.random()
        tune.report({"loss": loss, "accuracy": 1 / (1 + loss), "step": step})
        time.sleep(0.01)


def _result_counter() -> Any:
    """A Tune callback counting the results the sweep reports (the progress line's first bar)."""
    from ray.tune import Callback

    class ResultCounter(Callback):
        results = 0

        def on_trial_result(self, *args: Any, **kwargs: Any) -> None:
            self.results += 1

    return ResultCounter()


def run_demo(out: Path, trials: int, iterations: int) -> int:
    """Run the sweep with a live progress line, stop the collector, and print where the files are."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    from ray import tune

    from pipeline.ops.progress import ProgressLine
    from pipeline.producer.callback import BusCallback

    out = out.resolve()
    address, status_address = free_address(), free_address()
    collector = start_collector(address, out, "--status-bind", status_address)
    counter = _result_counter()
    progress = ProgressLine(status_address, trials * iterations, lambda: counter.results)
    progress.start()
    try:
        tuner = tune.Tuner(
            _trainable,
            param_space={"lr": tune.uniform(0.01, 0.2), "iterations": iterations},
            tune_config=tune.TuneConfig(num_samples=trials, metric="loss", mode="min"),
            run_config=tune.RunConfig(name="tunebus_demo", storage_path=str(out),
                                      callbacks=[BusCallback(address), counter], verbose=0),
        )
        grid = tuner.fit()
    finally:
        progress.stop()
        collector.send_signal(signal.SIGTERM)
        collector.wait(timeout=60)
    best = grid.get_best_result()
    results = [grid[i] for i in range(len(grid))]
    rows = sum(len(r.metrics_dataframe) for r in results if r.metrics_dataframe is not None)
    print(f"\ntunebus demo: {len(results)} trials, {rows} results written by the collector")
    print(f"  experiment folder: {out / 'tunebus_demo'}")
    print(f"  best trial: {best.path} (loss {(best.metrics or {}).get('loss', float('nan')):.4f})")
    print(f"  read it back: ray.tune.ExperimentAnalysis({str(out / 'tunebus_demo')!r})")
    return 0 if collector.returncode == 0 else 1
