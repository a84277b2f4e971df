"""Offered against delivered load and p99 latency, up to and past the collector's saturation."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from bench.collector import CollectorProcess
from bench.harness import BenchArgs, emit, parse_args
from bench.load import run_load
from bench.producers import LoadSpec

__all__ = ["main", "step"]

PRODUCERS = 2
SINKS = ("json", "csv")
SENDER = {"max_buffer_events": 50_000}


def step(collector: CollectorProcess, root: Path, rate: int, warm_s: float, window_s: float,
         drain_s: float) -> dict[str, Any]:
    """Offer ``rate`` results/s from two paced producers, then let everything drain."""
    specs = [LoadSpec(collector.address, i, rate_per_s=rate / PRODUCERS, warm_s=warm_s, window_s=window_s,
                      drain_s=drain_s, spool_dir=str(root / "spool"), sender=SENDER)
             for i in range(PRODUCERS)]
    run = run_load(collector, specs)
    return {"target_per_s": rate, **run.summary()}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args: BenchArgs = parse_args("saturation", argv)
    started = time.monotonic()
    rates: tuple[int, ...]
    if args.quick:
        rates, warm_s, window_s, drain_s = (5_000, 20_000, 80_000), 0.2, 0.6, 30.0
    else:
        rates = (2_500, 5_000, 10_000, 20_000, 30_000, 40_000, 60_000, 80_000, 120_000)
        warm_s, window_s, drain_s = 1.0, 3.0, 300.0
    with tempfile.TemporaryDirectory(prefix="tunebus-bench-") as tmp:
        root = Path(tmp)
        with CollectorProcess(root / "out", SINKS) as collector:
            steps = [step(collector, root, rate, warm_s, window_s, drain_s) for rate in rates]
            collector.stop()
    saturated = max(steps, key=lambda s: s["delivered_per_s"])
    plot = ""
    if args.plots:
        from bench.plots import saturation_plot

        plot = str(saturation_plot(steps))
    return emit("saturation", args, started, {
        "collector_sinks": list(SINKS), "producers": PRODUCERS, "sender": SENDER, "steps": steps,
        "saturation_per_s": saturated["delivered_per_s"],
        "lost_total": sum(s["lost"] for s in steps), "plot": plot,
    })


if __name__ == "__main__":
    main()
