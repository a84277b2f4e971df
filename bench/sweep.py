"""Wall time and driver CPU of a real Tuner sweep: no loggers, Tune's four, and BusCallback + collector."""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from bench.collector import CollectorProcess, available_sinks, cpu_seconds
from bench.harness import BenchArgs, child_env, emit, parse_args
from bench.trials import builtin_loggers

__all__ = ["main", "run_sweep"]

TARGET_RATIO = 1.1


def _callbacks(kind: str, address: str, storage: Path) -> list[Any]:
    """``none``; ``builtin``: Tune's four; ``bus``, ``bus_aim_in_collector``: every sink; ``bus_no_aim``:
    the files only; ``bus_no_collector``: BusCallback with nobody listening (its events go to a spool)."""
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


COLLECTED = ("bus", "bus_aim_in_collector", "bus_no_aim")
"""The kinds with a collector: every sink (aim in its own niced process, the default), every sink
with aim in the collector's process (``--aim-process off``: the design before), and the files only."""
CATCH_UP_TIMEOUT_S = 600.0


def _caught_up(status: str) -> float:
    """Seconds from now until every sink of the collector at ``status`` has written all it received."""
    from pipeline.ops.status_client import ask_status

    began = time.perf_counter()
    while time.perf_counter() - began < CATCH_UP_TIMEOUT_S:
        snapshot = ask_status(status)
        if all(sink.lag <= 0 for sink in snapshot.sinks.values()):
            return time.perf_counter() - began
        time.sleep(0.1)
    raise TimeoutError(f"the sinks did not catch up in {CATCH_UP_TIMEOUT_S:g}s")


def _children_cpu(collector: CollectorProcess) -> float:
    """CPU seconds of the collector's children (a sink in its own process) that are still running."""
    try:
        return sum(cpu_seconds(child) for child in collector.proc.children(recursive=True))
    except psutil.Error:
        return 0.0


def run_sweep(kind: str, storage: Path, trials: int, iterations: int) -> dict[str, Any]:
    """One ``Tuner.fit()``: its wall seconds, this (driver) process's CPU seconds, the rows written,
    and with a collector, when its last sink (aim, lagging by design) had written everything."""
    from ray import tune

    from bench.trainables import fast
    from pipeline.testing import free_address

    sinks = available_sinks() if kind != "bus_no_aim" else tuple(s for s in available_sinks() if s != "aim")
    status = free_address()
    flags = ("--status-bind", status, *(("--aim-process", "off") if kind == "bus_aim_in_collector" else ()))
    collector = CollectorProcess(storage, sinks, *flags) if kind in COLLECTED else None
    address = collector.address if collector else ""
    caught_up_s = sink_process_cpu = 0.0
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
        apart0 = _children_cpu(collector) if collector else 0.0
        began = time.perf_counter()
        grid: Any = tuner.fit()
        wall = time.perf_counter() - began
        cpu1 = me.cpu_times()
        collector_cpu = collector.cpu_s() - collector_cpu0 if collector else 0.0
        apart_in_fit = _children_cpu(collector) - apart0 if collector else 0.0
        if collector is not None:
            caught_up_s = _caught_up(status)
            sink_process_cpu = _children_cpu(collector)
    finally:
        if collector is not None:
            collector.stop()
    rows = 0
    if kind not in ("none", "bus_no_collector"):
        rows = sum(len(r.metrics_dataframe) for r in grid if r.metrics_dataframe is not None)
    row = {"loggers": kind, "wall_s": round(wall, 2),
           "driver_cpu_s": round(cpu1.user + cpu1.system - cpu0.user - cpu0.system, 2),
           "collector_cpu_s": round(collector_cpu, 2), "rows_read_back": rows,
           "errors": sum(1 for r in grid if r.error is not None)}
    if collector is not None:
        row.update(sinks=list(sinks), sinks_done_after_fit_s=round(caught_up_s, 2),
                   sink_process_cpu_s=round(sink_process_cpu, 2),
                   sink_process_cpu_in_fit_s=round(apart_in_fit, 2))
    return row


KINDS = ("none", "builtin", "bus", "bus_aim_in_collector", "bus_no_aim", "bus_no_collector")
QUICK_KINDS = ("none", "bus")


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rounds", type=int, default=1,
                        help="run the kinds this many times, alternating; ratios per round, then the median")
    parser.add_argument("--kinds", default=",".join(KINDS),
                        help="comma-separated kinds to run ('none' always)")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args: BenchArgs = parse_args("sweep", argv, _options)
    started = time.monotonic()
    trials, iterations = (4, 10) if args.quick else (32, 300)
    kinds = ["none", *(k for k in str(args.kinds).split(",") if k in KINDS and k != "none")]
    if args.quick:  # quick proves the script runs: the bus against no loggers is enough
        kinds = [k for k in kinds if k in QUICK_KINDS]
    rounds = max(1, int(args.rounds))
    os.environ["PYTHONPATH"] = child_env()["PYTHONPATH"]
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, configure_logging=False,
             log_to_driver=False)
    rows: list[dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="tunebus-bench-") as tmp:
            # Unmeasured: the first fit of a session pays for worker start-up and imports.
            run_sweep("none", Path(tmp) / "warmup", 2, 5)
            for round_ in range(rounds):  # alternating, so a busier minute of the machine hits every kind
                for kind in kinds:
                    rows.append({"round": round_,
                                 **run_sweep(kind, Path(tmp) / f"{kind}-{round_}", trials, iterations)})
    finally:
        ray.shutdown()
    per_round = []
    for round_ in range(rounds):
        by = {row["loggers"]: row for row in rows if row["round"] == round_}
        none = by["none"]
        per_round.append({kind: {"wall": round(r["wall_s"] / none["wall_s"], 2),
                                 "driver_cpu": round(r["driver_cpu_s"] / max(1e-9, none["driver_cpu_s"]), 2)}
                          for kind, r in by.items() if kind != "none"})
    ratios = {kind: {what: statistics.median(r[kind][what] for r in per_round)
                     for what in ("wall", "driver_cpu")} for kind in kinds if kind != "none"}
    bus = ratios.get("bus", {"wall": float("nan"), "driver_cpu": float("nan")})
    done = [row["sinks_done_after_fit_s"] for row in rows if row["loggers"] == "bus"]
    return emit("sweep", args, started, {
        "trials": trials, "iterations": iterations, "results": trials * iterations, "rounds": rounds,
        "builtin_loggers": ["json", "csv", "tbx", "aim"], "bus_sinks": list(available_sinks()),
        "runs": rows, "vs_no_loggers": ratios, "vs_no_loggers_per_round": per_round,
        "aim_done_after_fit_s": done,
        "target": {"max_ratio": TARGET_RATIO,
                   "met": bus["wall"] <= TARGET_RATIO and bus["driver_cpu"] <= TARGET_RATIO},
    })


if __name__ == "__main__":
    main()
