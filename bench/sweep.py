"""Wall time and driver CPU of a real Tuner sweep: no loggers, Tune's four, and BusCallback + collector."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from bench.collector import CollectorProcess, available_sinks
from bench.harness import BenchArgs, child_env, emit, parse_args
from bench.trials import builtin_loggers

__all__ = ["main", "run_sweep"]

TARGET_RATIO = 1.1


def _callbacks(kind: str, address: str, storage: Path) -> list[Any]:
    """``none``; ``builtin``: Tune's four; ``bus``: every sink; ``bus_no_aim``: the files only;
    ``bus_no_collector``: BusCallback with nobody listening (its events go to a spool)."""
    from pipeline.producer.callback import BusCallback
    from pipeline.producer.sender import SenderConfig
    from pipeline.testing import free_address

    if kind == "none":
        return []
    if kind == "builtin":
        return [cls() for cls in builtin_loggers().values()]
    if kind == "bus_no_collector":
        return [BusCallback(free_address(), sender=SenderConfig(spool_dir=str(storage / "spool")))]
    return [BusCallback(address)]


def run_sweep(kind: str, storage: Path, trials: int, iterations: int) -> dict[str, Any]:
    """One ``Tuner.fit()``: its wall seconds, this (driver) process's CPU seconds, the rows written."""
    from ray import tune

    from bench.trainables import fast

    sinks = available_sinks() if kind == "bus" else tuple(s for s in available_sinks() if s != "aim")
    collector = CollectorProcess(storage, sinks) if kind in ("bus", "bus_no_aim") else None
    address = collector.address if collector else ""
    try:
        tuner = tune.Tuner(
            fast,
            param_space={"iterations": iterations, "lr": tune.uniform(0.001, 0.1)},
            tune_config=tune.TuneConfig(num_samples=trials),
            run_config=tune.RunConfig(name=f"sweep_{kind}", storage_path=str(storage), verbose=0,
                                      callbacks=_callbacks(kind, address, storage)),
        )
        me = psutil.Process()
        cpu0, collector_cpu0 = me.cpu_times(), collector.cpu_s() if collector else 0.0
        began = time.perf_counter()
        grid: Any = tuner.fit()
        wall = time.perf_counter() - began
        cpu1 = me.cpu_times()
        collector_cpu = collector.cpu_s() - collector_cpu0 if collector else 0.0
    finally:
        if collector is not None:
            collector.stop()
    rows = 0
    if kind not in ("none", "bus_no_collector"):
        rows = sum(len(r.metrics_dataframe) for r in grid if r.metrics_dataframe is not None)
    return {"loggers": kind, "wall_s": round(wall, 2),
            "driver_cpu_s": round(cpu1.user + cpu1.system - cpu0.user - cpu0.system, 2),
            "collector_cpu_s": round(collector_cpu, 2), "rows_read_back": rows,
            "errors": sum(1 for r in grid if r.error is not None)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args: BenchArgs = parse_args("sweep", argv)
    started = time.monotonic()
    trials, iterations = (4, 10) if args.quick else (32, 300)
    os.environ["PYTHONPATH"] = child_env()["PYTHONPATH"]
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, configure_logging=False,
             log_to_driver=False)
    try:
        with tempfile.TemporaryDirectory(prefix="tunebus-bench-") as tmp:
            # Unmeasured: the first fit of a session pays for worker start-up and imports.
            run_sweep("none", Path(tmp) / "warmup", 2, 5)
            rows = [run_sweep(kind, Path(tmp) / kind, trials, iterations)
                    for kind in ("none", "builtin", "bus", "bus_no_aim", "bus_no_collector")]
    finally:
        ray.shutdown()
    by = {row["loggers"]: row for row in rows}
    none = by["none"]
    ratios = {kind: {"wall": round(r["wall_s"] / none["wall_s"], 2),
                     "driver_cpu": round(r["driver_cpu_s"] / max(1e-9, none["driver_cpu_s"]), 2)}
              for kind, r in by.items() if kind != "none"}
    bus = ratios["bus"]
    return emit("sweep", args, started, {
        "trials": trials, "iterations": iterations, "results": trials * iterations,
        "builtin_loggers": ["json", "csv", "tbx", "aim"], "bus_sinks": list(available_sinks()),
        "runs": rows, "vs_no_loggers": ratios,
        "target": {"max_ratio": TARGET_RATIO,
                   "met": bus["wall"] <= TARGET_RATIO and bus["driver_cpu"] <= TARGET_RATIO},
    })


if __name__ == "__main__":
    main()
