"""Sustained results/s through each sink alone and all together, from 1, 8 and 64 producer processes."""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.aim_floor import aim_floor
from bench.collector import CollectorProcess, available_sinks
from bench.harness import BenchArgs, emit, parse_args
from bench.load import run_load
from bench.producers import LoadSpec

__all__ = ["main", "measure", "sink_sets"]

TARGETS_PER_S = {"json,csv": 100_000, "tensorboard": 20_000}
AIM_FLOOR_SLACK = 1.2
INFLIGHT_TOTAL = 40_000
TRIALS_PER_PRODUCER = 8
"""A driver runs many trials: each producer spreads its results over these, so shards share them."""
SHARD_COUNTS = (1, 2)
SHARDED_SINKS = ("json", "csv")
"""The sinks measured with every count of ``SHARD_COUNTS`` (the others with one shard)."""


def sink_sets(sinks: tuple[str, ...]) -> list[tuple[str, ...]]:
    """Each sink alone, JSON + CSV (the target's pair), and every sink together."""
    sets: list[tuple[str, ...]] = [(name,) for name in sinks]
    for extra in (("json", "csv"), sinks):
        if extra not in sets and all(s in sinks for s in extra):
            sets.append(extra)
    return sets


def measure(sinks: tuple[str, ...], counts: tuple[int, ...], warm_s: float, window_s: float,
            root: Path, drain_s: float = 30.0, shards: int = 1) -> list[dict[str, Any]]:
    """One collector (``shards`` of them as one set) for ``sinks``; each producer count in turn,
    flat out, bounded in flight, each producer's results spread over ``TRIALS_PER_PRODUCER``
    trials and routed to their shards.

    Each count waits up to ``drain_s`` for its backlog so the next count starts clean; what is
    left then goes to the producers' spool in the temporary directory.
    """
    rows = []
    with CollectorProcess(root / f"{'-'.join(sinks)}-{shards}", sinks, shards=shards) as collector:
        for n in counts:
            inflight = max(500, INFLIGHT_TOTAL // n)
            specs = [LoadSpec(collector.address, i, warm_s=warm_s, window_s=window_s,
                              max_inflight=inflight, drain_s=drain_s, spool_dir=str(root / "spool"),
                              trials=TRIALS_PER_PRODUCER,
                              shards=collector.addresses if shards > 1 else ())
                     for i in range(n)]
            run = run_load(collector, specs)
            rows.append({"sinks": ",".join(sinks), "shards": shards, **run.summary()})
        collector.kill()
    return rows


def _flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sharded-only", action="store_true",
                        help="only JSON+CSV, from 1 and 8 producers, with each shard count")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args: BenchArgs = parse_args("throughput", argv, extra=_flags)
    started = time.monotonic()
    counts = (1, 8) if args.quick else (1, 8, 64)
    warm_s, window_s = (0.3, 0.7) if args.quick else (1.0, 4.0)
    sinks = available_sinks()
    chosen_sets = sink_sets(sinks)
    if getattr(args, "sharded_only", False) or args.quick:  # quick: JSON+CSV over 1 and 2 shards
        chosen_sets, counts = [SHARDED_SINKS], counts[:2]
    rows: list[dict[str, Any]] = []
    drain_s = 0.0 if args.quick else 30.0
    with tempfile.TemporaryDirectory(prefix="tunebus-bench-") as tmp:
        for chosen in chosen_sets:
            rows.extend(measure(chosen, counts, warm_s, window_s, Path(tmp), drain_s))
            if chosen == SHARDED_SINKS:
                for shards in SHARD_COUNTS[1:]:
                    rows.extend(measure(chosen, counts[:2], warm_s, window_s, Path(tmp), drain_s, shards))
    best: dict[str, int] = {}
    for row in rows:
        best[row["sinks"]] = max(best.get(row["sinks"], 0), row["delivered_per_s"])
    by_shards = {f"{row['shards']} shards, {row['producers']} producers": row["delivered_per_s"]
                 for row in rows if row["sinks"] == ",".join(SHARDED_SINKS)}
    targets = [{"sinks": k, "target_per_s": v, "best_per_s": best.get(k), "met": best.get(k, 0) >= v}
               for k, v in TARGETS_PER_S.items() if k in best]
    floor = aim_floor(20 if args.quick else 300) if "aim" in best else {}
    if "aim" in best:
        aim_target = round(floor["floor_results_per_s"] / AIM_FLOOR_SLACK)
        targets.append({"sinks": "aim", "target_per_s": aim_target, "best_per_s": best["aim"],
                        "met": best["aim"] >= aim_target})
    if args.plots:
        from bench.plots import throughput_plot

        throughput_plot(rows)
    return emit("throughput", args, started, {"sinks_available": list(sinks), "producer_counts": list(counts),
                                              "runs": rows, "best_per_s": best, "targets": targets,
                                              "sharded_per_s": by_shards,
                                              "aim_floor": floor})


if __name__ == "__main__":
    main()
