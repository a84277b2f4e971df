"""Results/s into JSON + CSV through 1 and 2 collector shards started as Ray actors, same producers."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import psutil

from bench.collector import CollectorProcess
from bench.harness import BenchArgs, emit, parse_args
from bench.load import run_load
from bench.producers import LoadSpec

__all__ = ["main", "measure"]

SINKS = ("json", "csv")
PRODUCERS = 4
TRIALS = 8
"""Trials each producer spreads its results over (a driver runs many), so that shards share them."""
INFLIGHT_TOTAL = 40_000


class _Together:
    """Several processes' CPU seconds as one ``psutil.Process``'s ``cpu_times()``."""

    def __init__(self, pids: list[int]) -> None:
        self.procs = [psutil.Process(pid) for pid in pids]

    def children(self, recursive: bool = False) -> list[psutil.Process]:
        """None of its own: the shard children are the processes themselves."""
        return []

    def cpu_times(self) -> SimpleNamespace:
        user = system = 0.0
        for proc in self.procs:
            try:
                times = proc.cpu_times()
            except psutil.Error:
                continue
            user, system = user + times.user, system + times.system
        return SimpleNamespace(user=user, system=system)


def measure(shards: int, root: Path, warm_s: float, window_s: float, drain_s: float) -> dict[str, Any]:
    """``shards`` collector actors on this node, PRODUCERS processes flat out, each spreading its
    results over TRIALS trials routed to their shards by ``shard_of``; delivered results/s in the window."""
    from pipeline.entry.ray_actor import start_collector_on_ray, stop_collector_on_ray

    name = f"tunebus-bench-shards-{shards}-{time.time_ns() & 0xFFFFFF:x}"
    found = start_collector_on_ray(out=root / name, bind="tcp://127.0.0.1:0", name=name, shards=shards,
                                   curve=False, sinks=SINKS, log_level="WARNING")
    try:
        every = found.shards or (found,)
        addresses = [s.address for s in every]
        specs = [LoadSpec(addresses[0], i, warm_s=warm_s, window_s=window_s,
                          max_inflight=INFLIGHT_TOTAL // PRODUCERS, drain_s=drain_s,
                          spool_dir=str(root / "spool"), trials=TRIALS,
                          shards=tuple(addresses) if shards > 1 else ())
                 for i in range(PRODUCERS)]
        collector = cast(CollectorProcess, SimpleNamespace(proc=_Together([s.pid for s in every])))
        run = run_load(collector, specs)
    finally:
        stop_collector_on_ray(name, timeout_s=60)
    summary = run.summary()
    return {"shards": shards, "per_shard_per_s": round(summary["delivered_per_s"] / shards), **summary}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args: BenchArgs = parse_args("shards", argv)
    started = time.monotonic()
    import ray

    warm_s, window_s = (0.3, 0.7) if args.quick else (1.0, 4.0)
    rounds = 1 if args.quick else 2
    ray.init(address="local", num_cpus=2, include_dashboard=False, configure_logging=False,
             log_to_driver=False)
    runs: list[dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="tunebus-bench-shards-") as tmp:
            for _ in range(rounds):  # alternating, so that the machine's drift hits both alike
                for shards in (1, 2):
                    runs.append(measure(shards, Path(tmp), warm_s, window_s, 0.0 if args.quick else 30.0))
    finally:
        ray.shutdown()
    best = {n: max(r["delivered_per_s"] for r in runs if r["shards"] == n) for n in (1, 2)}
    return emit("shards", args, started, {
        "sinks": list(SINKS), "producers": PRODUCERS, "runs": runs,
        "best_per_s": {str(n): v for n, v in best.items()},
        "two_over_one": round(best[2] / best[1], 2) if best[1] else 0.0,
    })


if __name__ == "__main__":
    main()
